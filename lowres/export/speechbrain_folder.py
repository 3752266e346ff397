"""A trained run as a SpeechBrain pretrained-model folder (like speechbrain/spkrec-ecapa-voxceleb).

    from speechbrain.inference.speaker import EncoderClassifier, SpeakerRecognition
    model = EncoderClassifier.from_hparams(source=DIR, savedir=CACHE)
    model.encode_batch(wavs)        # [B, 1, D], the run's embeddings
    model.classify_batch(wavs)      # cosine to each training speaker, best one, its label
    verifier = SpeakerRecognition.from_hparams(source=DIR, savedir=CACHE)
    verifier.verify_batch(wavs_a, wavs_b, threshold=verifier.hparams.threshold)

The folder holds ``hyperparams.yaml`` (SpeechBrain's module names: ``compute_features``,
``mean_var_norm``, ``embedding_model``, ``classifier``, ``label_encoder``, ``pretrainer``; and
``threshold``, the run's decision threshold on cosine scores, with ``threshold_rule`` saying
what it is: :func:`lowres.scoring.speaker_verifier.run_threshold` at its default prior, the
decision ``python -m lowres.verify`` prints, since SpeakerRecognition's ``verify_batch``
decides at 0.25 unless given ``threshold=`` and its ``verify_files`` always at 0.25),
``embedding_model.ckpt`` and ``classifier.ckpt`` (state dicts of tensors only: they load with
``torch.load(weights_only=True)``), ``label_encoder.ckpt`` (the run's label_encoder.txt,
SpeechBrain's plain-text CategoricalEncoder format) and the model card ``README.md``.
The Pretrainer names no paths, so it fetches ``<source>/<name>.ckpt`` from whatever
``source`` is given: the same folder loads from disk or from a HuggingFace model repository.

The yaml names only SpeechBrain, transformers and torch classes (no lowres code is needed):

- x-vector / ECAPA-TDNN: ``speechbrain.lobes.features.MFCC`` with lowres's numbers (no deltas,
  no context) is lowres's MFCC front-end except for the window: the lobe builds its STFT with
  a Hamming window, lowres (as the study's torchaudio MFCC) uses Hann, so the yaml replaces
  the window once at load time. ``InputNormalization(norm_type=sentence)`` is lowres's
  per-utterance normalisation; SpecAugment is training-only and left out. The backbone is
  SpeechBrain's ``Xvector`` / ``ECAPA_TDNN`` with the run's arguments. SpeechBrain's
  ``StatisticsPooling`` (x-vector) adds random 1e-5..9e-5 to the pooled mean even in eval;
  lowres adds the expected 5e-5 instead, and the yaml gives the pooling that same constant.
- wav2vec2: ``compute_features`` is the identity, ``mean_var_norm`` the per-utterance
  waveform normalisation, ``embedding_model`` a ``LengthsCapableSequential`` of
  ``transformers.Wav2Vec2Model`` (its config written out in the yaml, so nothing is
  downloaded) and a mean ``StatisticsPooling`` over the valid frames without noise. That is
  the study's model (``ssl_pooling: last``, no ``ssl_backend``); a run with another pooling
  (``weighted_sum``, ``mhfa``) or an ``ssl_backend`` has no such yaml and is refused
  before anything is written: its ONNX export (lowres.export.onnx) takes any pooling.
  Every ``ssl_adaptation`` exports: a ``lora`` run's LoRA is folded into the weights it
  adapts (``merge_adaptation``), so the folder holds a plain ``Wav2Vec2Model``; an
  ``adapter`` run's backbone is SpeechBrain's ``AdaptedModel`` with a
  ``HoulsbyAdapterLinear`` (GELU, the run's bottleneck) around ``out_proj`` and
  ``output_dense`` of every layer, in eval the very adapters lowres applies after the
  attention and feed-forward blocks (lowres.models.ssl_adaptation).

Equality with lowres holds for one utterance at a time and for batches of equal length, the
way lowres itself embeds. SpeechBrain pads a batch of unequal lengths and passes relative
lengths: TDNN convolutions then see padding at an utterance's end (lowres runs each length
alone), and wav2vec2-base's group-norm CNN normalises over the padding (as in lowres).
The export checks itself: the written folder is loaded with SpeechBrain and must give the
lowres embeddings and classifier outputs within 1e-4, or nothing is written.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
from pathlib import Path

import ruamel.yaml
import torch
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.tag import Tag

from lowres.export.run import ExportError, RunForExport, decision_threshold, load_run
from lowres.io.audio import SAMPLE_RATE

__all__ = ["EXPORT_MARK", "TOLERANCE", "export_speechbrain_folder", "speechbrain_yaml"]

#: First words of every exported hyperparams.yaml (an earlier export may be replaced).
EXPORT_MARK = "# SpeechBrain pretrained-model folder exported by lowres"
#: Largest allowed difference between SpeechBrain's and lowres's outputs in the self-check.
TOLERANCE = 1e-4
_CHECK_SECONDS = (1.3, 3.0)


# ---------------------------------------------------------------------------- yaml nodes


def _tagged(tag: str, value):
    """A yaml node ``!tag value`` (mapping, flow sequence or scalar)."""
    if isinstance(value, dict):
        node = CommentedMap((k, _flow(v)) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        node = CommentedSeq(value)
        node.fa.set_flow_style()
    else:
        return TaggedScalar(str(value), tag=tag)
    node.yaml_set_ctag(Tag(suffix=tag))
    return node


def _flow(value):
    """A list of scalars as a one-line ``[a, b]`` sequence; anything else unchanged."""
    if isinstance(value, (list, tuple)) and not isinstance(value, CommentedSeq) \
            and not any(isinstance(v, (dict, list, tuple)) for v in value):
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()
        return seq
    return value


def _ref(key: str) -> TaggedScalar:
    return TaggedScalar(f"<{key}>", tag="!ref")


def _plain(node):
    """A node of the run's yaml without its anchors and comments (tags kept)."""
    tag = getattr(node, "tag", None)
    tag = tag.value if tag is not None else None
    if isinstance(node, TaggedScalar):
        return TaggedScalar(node.value, tag=tag)
    if isinstance(node, dict):
        value = {str(k): _plain(v) for k, v in node.items()}
    elif isinstance(node, list):
        value = [_plain(v) for v in node]
        if not tag:
            seq = CommentedSeq(value)
            if not any(isinstance(v, (dict, list)) for v in value):
                seq.fa.set_flow_style()
            return seq
    else:
        return node
    return _tagged(tag, value) if tag else CommentedMap(value)


def _run_node(run: RunForExport, *keys: str):
    node = ruamel.yaml.YAML().load(run.yaml_text)
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ExportError(f"{run.folder / 'hyperparams.yaml'}: no {'.'.join(keys)}")
        node = node[key]
    return _plain(node)


def _module_paths(module: torch.nn.Module, cls: type) -> list[str]:
    """Dotted names of the submodules that are ``cls`` instances."""
    return [name for name, m in module.named_modules() if isinstance(m, cls)]


def _pooling_fix(model_key: str, path: str, noise: CommentedMap | TaggedScalar):
    """``setattr(<model>.get_submodule(path), "_get_gauss_noise", noise)`` at load time."""
    target = (_tagged("!apply:torch.nn.Module.get_submodule", [_ref(model_key), path])
              if path else _ref(model_key))
    node = CommentedSeq([target, "_get_gauss_noise", noise])
    node.yaml_set_ctag(Tag(suffix="!apply:setattr"))
    return node


def _mfcc_nodes(run: RunForExport) -> dict:
    from speechbrain.nnet.pooling import StatisticsPooling

    frontend = run.embedder.frontend
    stft, fbank = frontend.stft, frontend.filterbank
    if not torch.equal(stft.window, torch.hann_window(stft.win_length)):
        raise ExportError("the MFCC front-end's STFT window is not Hann")
    defaults = {"log_mel": True, "power_spectrogram": 2, "amin": 1e-10, "ref_value": 1.0,
                "top_db": 80.0, "filter_shape": "triangular"}
    for key, value in defaults.items():
        if getattr(fbank, key) != value:
            raise ExportError(f"MFCC front-end: filterbank {key}={getattr(fbank, key)!r}; "
                              f"SpeechBrain's MFCC lobe fixes {value!r}")
    ms = 1000.0 / stft.sample_rate
    nodes = {
        "compute_features": _tagged("!new:speechbrain.lobes.features.MFCC", {
            "deltas": False, "context": False, "sample_rate": stft.sample_rate,
            "n_fft": stft.n_fft, "win_length": stft.win_length * ms,
            "hop_length": stft.hop_length * ms, "n_mels": fbank.n_mels,
            "n_mfcc": frontend.n_mfcc, "f_min": fbank.f_min, "f_max": fbank.f_max,
        }),
        "__hann_window": _tagged("!apply:setattr", [
            _tagged("!apply:getattr", [_ref("compute_features"), "compute_STFT"]), "window",
            _tagged("!apply:torch.hann_window", [stft.win_length])]),
        "mean_var_norm": _tagged("!new:speechbrain.processing.features.InputNormalization",
                                 {"norm_type": "sentence", "std_norm": True}),
        "embedding_model": _run_node(run, "embedder", "backbone"),
    }
    noise = _tagged("!name:torch.full", {"fill_value": 5 * StatisticsPooling().eps})
    for i, path in enumerate(_module_paths(run.embedder.backbone, StatisticsPooling)):
        nodes[f"__eval_pooling_offset_{i}"] = _pooling_fix("embedding_model", path, noise)
    return nodes


def _wav2vec2_config(run: RunForExport) -> dict:
    """The run's Wav2Vec2Config: every argument of its own constructor, written out."""
    import inspect

    from transformers import Wav2Vec2Config

    config = run.embedder.wav2vec2.config.to_dict()
    own = set(inspect.signature(Wav2Vec2Config.__init__).parameters) - {"self", "kwargs"}
    values = {k: config[k] for k in sorted(own) if k in config}
    values["return_dict"] = False  # LengthsCapableSequential passes a tuple's first element
    return values


def _check_last_layer_mean(embedder: torch.nn.Module) -> None:
    """Refuse an SSL embedder whose pooling SpeechBrain's and transformers' classes cannot
    build (the yaml of the folder needs no lowres code)."""
    if embedder.pooling != "last" or embedder.backend is not None:
        what = (f"ssl_pooling={embedder.pooling!r}" if embedder.pooling != "last"
                else "an ssl_backend")
        raise ExportError(f"a wav2vec2 run with {what} cannot be exported as a SpeechBrain "
                          "folder (its hyperparams.yaml builds, without lowres code, only "
                          "mean pooling of the last layer): export it with --onnx")


#: each block of a transformer layer that lowres adapts -> the linear map whose output the
#: block returns; SpeechBrain's HoulsbyAdapterLinear wrapped around that map adds the same
#: adapter at the same place (the feed-forward block's output dropout, which eval skips,
#: follows the adapter there and precedes it in lowres)
_ADAPTED_LINEARS = {"attention": "out_proj", "feed_forward": "output_dense"}


def _adapted_backbone_node(run: RunForExport, backbone):
    """``backbone`` in SpeechBrain's ``AdaptedModel`` with a ``HoulsbyAdapterLinear`` (GELU,
    the run's bottleneck) around the linear map that ends each adapted block."""
    from lowres.models.ssl_adaptation import ADAPTER

    first = getattr(run.embedder.wav2vec2.encoder.layers[0].attention, ADAPTER)
    return _tagged("!new:speechbrain.nnet.adapters.AdaptedModel", {
        "model_to_adapt": backbone,
        "adapter_class": _tagged("!name:speechbrain.nnet.adapters.HoulsbyAdapterLinear", {}),
        "target_layers": [f"encoder.layers.*.{block}.{linear}"
                          for block, linear in _ADAPTED_LINEARS.items()],
        "adapter_kwargs": CommentedMap([
            ("projection_size", first.down.out_features),
            ("activation", _tagged("!name:torch.nn.GELU", {}))]),
    })


def _wav2vec2_nodes(run: RunForExport) -> dict:
    _check_last_layer_mean(run.embedder)
    backbone = _tagged("!new:transformers.Wav2Vec2Model", [_ref("wav2vec2_config")])
    if run.embedder.adaptation == "adapter":
        backbone = _adapted_backbone_node(run, backbone)
    return {
        "compute_features": _tagged("!new:torch.nn.Identity", {}),
        "mean_var_norm": _tagged("!new:speechbrain.processing.features.InputNormalization",
                                 {"norm_type": "sentence", "std_norm": True,
                                  "avoid_padding_norm": True}),
        "wav2vec2_config": _tagged("!new:transformers.Wav2Vec2Config", _wav2vec2_config(run)),
        "embedding_model": _tagged("!new:speechbrain.nnet.containers.LengthsCapableSequential", {
            "wav2vec2": backbone,
            "pooling": _tagged("!new:speechbrain.nnet.pooling.StatisticsPooling",
                               {"return_std": False}),
        }),
        "__mean_without_noise": _pooling_fix("embedding_model", "pooling",
                                             _tagged("!name:torch.zeros", {})),
    }


_COMMENTS = {
    "sample_rate": "Input: 16 kHz mono waveforms (SpeechBrain's load_audio resamples and "
                   "downmixes files).",
    "threshold": "This run's same/different threshold on cosine scores (threshold_rule says "
                 "what it is):\npass it to verify_batch (threshold=...), which decides at "
                 "SpeechBrain's 0.25 unless given one\n(verify_files always decides at 0.25).",
    "compute_features": "Front-end (see README.md: lowres's numbers, SpeechBrain classes).",
    "mean_var_norm": "Mean and variance normalisation over each utterance.",
    "__hann_window": "lowres windows the STFT with Hann (the study's torchaudio MFCC); the "
                     "MFCC lobe builds a Hamming one.",
    "__eval_pooling_offset_0": "SpeechBrain's StatisticsPooling adds random 1e-5..9e-5 to the "
                               "mean in eval too; lowres adds its expected 5e-5.",
    "wav2vec2_config": "The run's wav2vec2 architecture (no download: the weights are in "
                       "embedding_model.ckpt).",
    "__mean_without_noise": "Mean over the valid frames, without StatisticsPooling's random "
                            "offset (lowres adds none).",
    "embedding_model": "Speaker embedder (weights: embedding_model.ckpt).",
    "classifier": "Cosine classifier over the training speakers (weights: classifier.ckpt).",
    "label_encoder": "Training speakers (label_encoder.ckpt: plain-text CategoricalEncoder).",
    "pretrainer": "No paths: each loadable is fetched as <source>/<name>.ckpt, so the folder "
                  "loads from disk or a hub repository alike.",
}


def _classifier_node(run: RunForExport):
    """SpeechBrain's ECAPA_TDNN.Classifier with the run's sizes (read from its weights)."""
    from speechbrain.lobes.models.ECAPA_TDNN import Classifier

    if type(run.classifier) is not Classifier:
        raise ExportError(f"classifier {type(run.classifier).__name__} cannot be exported "
                          "(SpeechBrain's ECAPA_TDNN.Classifier can)")
    out_neurons, last = run.classifier.weight.shape
    return _tagged("!new:speechbrain.lobes.models.ECAPA_TDNN.Classifier", {
        "input_size": int(run.embedder.embedding_dim), "out_neurons": int(out_neurons),
        "lin_blocks": len(run.classifier.blocks), "lin_neurons": int(last)})


def speechbrain_yaml(run: RunForExport) -> str:
    """The hyperparams.yaml of the exported folder."""
    threshold = decision_threshold(run)
    doc = CommentedMap()
    doc["sample_rate"] = int(run.hparams.get("sample_rate", SAMPLE_RATE))
    doc["threshold"] = None if threshold is None else round(threshold.score, 4)
    doc["threshold_rule"] = ("none stored: the run has no validation results"
                             if threshold is None else threshold.rule)
    doc.update(_wav2vec2_nodes(run) if run.family == "wav2vec2" else _mfcc_nodes(run))
    doc["classifier"] = _classifier_node(run)
    doc["label_encoder"] = _tagged("!new:speechbrain.dataio.encoder.CategoricalEncoder", {})
    doc["modules"] = CommentedMap((k, _ref(k)) for k in (
        "compute_features", "mean_var_norm", "embedding_model", "classifier"))
    doc["pretrainer"] = _tagged("!new:speechbrain.utils.parameter_transfer.Pretrainer", {
        "loadables": CommentedMap((k, _ref(k)) for k in (
            "embedding_model", "classifier", "label_encoder"))})
    for key, text in _COMMENTS.items():
        if key in doc:
            doc.yaml_set_comment_before_after_key(key, before="\n" + text)
    stream = io.StringIO()
    dumper = ruamel.yaml.YAML()
    dumper.width = 4096  # one line per flow sequence
    dumper.dump(doc, stream)
    needs_lowres = [line.strip() for line in stream.getvalue().splitlines()
                    if ":lowres." in line and not line.lstrip().startswith("#")]
    if needs_lowres:
        raise ExportError(f"the exported hyperparams.yaml would need lowres: {needs_lowres[0]}")
    step = run.ckpt.meta.get("step")
    header = (f"{EXPORT_MARK} (python -m lowres.export) from the {run.checkpoint} "
              f"checkpoint\n# ({run.ckpt.path.name}, step {step}) of the run {run.folder.name}.\n"
              "# Load: speechbrain.inference.speaker.EncoderClassifier.from_hparams("
              "source=<this folder>, savedir=...)\n")
    return header + stream.getvalue()


# ---------------------------------------------------------------------------- weights


def _tensors(state: dict) -> dict:
    """A plain dict of detached CPU tensors (what torch.load(weights_only=True) accepts)."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _adapter_key(key: str) -> str:
    """A key of lowres's adapted backbone as SpeechBrain's ``AdaptedModel`` names it: an
    adapter's weights and those of the linear map it follows inside that map's
    ``HoulsbyAdapterLinear``."""
    from lowres.models.ssl_adaptation import ADAPTER

    for block, linear in _ADAPTED_LINEARS.items():
        for ours, theirs in ((f".{block}.{ADAPTER}.down.", f".{block}.{linear}.adapter_down_proj."),
                             (f".{block}.{ADAPTER}.up.", f".{block}.{linear}.adapter_up_proj."),
                             (f".{block}.{linear}.", f".{block}.{linear}.pretrained_linear.")):
            if ours in key:
                return "adapted_model." + key.replace(ours, theirs)
    return "adapted_model." + key


def _backbone_state(embedder: torch.nn.Module) -> dict:
    """The wav2vec2 weights as the folder's yaml builds the backbone: LoRA folded into them
    (a plain backbone), adapters in ``AdaptedModel``'s layout."""
    if embedder.adaptation == "adapter":
        return {_adapter_key(k): v for k, v in embedder.wav2vec2.state_dict().items()}
    from lowres.models.ssl_adaptation import merge_adaptation

    return merge_adaptation(embedder).state_dict()


def embedding_state(run: RunForExport) -> dict:
    """State dict of ``embedding_model``: the TDNN backbone, or wav2vec2 (prefix kept)."""
    if run.family == "wav2vec2":
        return _tensors({f"wav2vec2.{k}": v for k, v in _backbone_state(run.embedder).items()})
    return _tensors(run.embedder.backbone.state_dict())


def _write_weights(run: RunForExport, folder: Path) -> None:
    torch.save(embedding_state(run), folder / "embedding_model.ckpt")
    torch.save(_tensors(run.classifier.state_dict()), folder / "classifier.ckpt")
    shutil.copyfile(run.label_encoder, folder / "label_encoder.ckpt")


# ---------------------------------------------------------------------------- self-check


def check_waveforms(sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
    """Deterministic test signals (noise with a harmonic tone) of a few lengths."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for seconds in _CHECK_SECONDS:
        n = int(seconds * sample_rate)
        t = torch.arange(n) / sample_rate
        tone = sum(torch.sin(2 * math.pi * 140 * h * t) / h for h in (1, 2, 3))
        out.append(0.1 * tone + 0.02 * torch.randn(n, generator=gen))
    return out


@torch.no_grad()
def check_folder(run: RunForExport, folder: Path) -> float:
    """Largest difference between SpeechBrain on ``folder`` and lowres; raises past TOLERANCE."""
    from speechbrain.inference.classifiers import EncoderClassifier

    with tempfile.TemporaryDirectory(prefix="lowres-export-check-") as cache:
        model = EncoderClassifier.from_hparams(source=str(folder), savedir=cache,
                                               run_opts={"device": "cpu"})
        worst = 0.0
        for wav in check_waveforms(int(run.hparams.get("sample_rate", SAMPLE_RATE))):
            ours = run.embedder(wav[None], torch.ones(1))
            theirs = model.encode_batch(wav[None]).reshape(1, -1)
            logits_ours = run.classifier(ours[:, None]).reshape(1, -1)
            logits_theirs = model.classify_batch(wav[None])[0].reshape(1, -1)
            worst = max(worst, float((ours - theirs).abs().max()),
                        float((logits_ours - logits_theirs).abs().max()))
    if not worst <= TOLERANCE:
        raise ExportError(f"the exported {run.family} folder differs from lowres by {worst:.3g} "
                          f"(> {TOLERANCE}) on the check signals; nothing written")
    return worst


# ---------------------------------------------------------------------------- export


def _check_target(out: Path) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    yaml_file = out / "hyperparams.yaml"
    if yaml_file.is_file() and yaml_file.read_text(encoding="utf-8").startswith(EXPORT_MARK):
        return  # an earlier export: replaced whole
    raise ExportError(f"{out} exists and is not an earlier lowres export: choose another --out")


def export_speechbrain_folder(run_folder: str | os.PathLike, out: str | os.PathLike,
                              checkpoint: str = "best") -> Path:
    """Write the SpeechBrain folder of ``run_folder``'s ``checkpoint`` to ``out`` (atomically)."""
    from lowres.export.model_card import model_card
    from lowres.io.atomic import atomic_folder

    out = Path(out)
    _check_target(out)
    run = load_run(run_folder, checkpoint)
    with atomic_folder(out) as tmp:
        (tmp / "hyperparams.yaml").write_text(speechbrain_yaml(run), encoding="utf-8")
        _write_weights(run, tmp)
        worst = check_folder(run, tmp)
        (tmp / "README.md").write_text(model_card(run, max_difference=worst), encoding="utf-8")
    return out
