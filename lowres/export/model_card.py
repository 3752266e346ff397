"""The README.md (HuggingFace model card) of an exported folder, written from the run.

Everything in it comes from the run folder: the architecture from the built embedder (with
how an SSL backbone adapted, ``ssl_adaptation``), how many parameters trained from
``parameters.json`` (when the run has one), the training subset's ``stats.json``, the
hyperparameters from ``hyperparams.yaml`` (only those that applied: the parameters of the LR
schedule the run used, MHFA's sizes, LoRA's and the adapters' keys, augmentation's and
AS-norm's settings only for runs that used them, and the precision the test really ran in,
results.json's ``test_precision``), the checkpoint's step and validation EER, and the test
results, calibration and decision threshold of ``eval/<checkpoint>/results.json``. A run
that trained on the synthetic corpus (its ``README.txt`` marker, see
:func:`lowres.export.run.is_synthetic`) says so at the top. The card is meant to be
published: it names runs and local folders by their folder names only, never by a path.
"""

from __future__ import annotations

from pathlib import Path

import speechbrain
import torch

from lowres.export.run import RunForExport, decision_threshold
from lowres.io.lists import TEST_SET_LABELS
from lowres.training.schedules import SCHEDULE_KEYS

__all__ = ["CITATION", "model_card"]

CITATION = """@inproceedings{vaessen2022training,
  title     = {Training speaker recognition systems with limited data},
  author    = {Vaessen, Nik and van Leeuwen, David A.},
  booktitle = {Proc. Interspeech 2022},
  year      = {2022},
  eprint    = {2203.14688},
  archivePrefix = {arXiv}
}"""

_ARCHITECTURE = {
    "xvector": "x-vector (SpeechBrain `Xvector`) on 80 MFCCs",
    "ecapa": "ECAPA-TDNN (SpeechBrain `ECAPA_TDNN`) on 80 MFCCs",
    "wav2vec2": "wav2vec2 (transformers `Wav2Vec2Model`) with mean pooling of its last layer",
}
_OPERATIONAL = {"num_workers", "log_interval", "ckpt_interval_minutes", "prepare_options",
                "find_unused_parameters", "evaluate_after_training"}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _num(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def _hyperparameters(run: RunForExport) -> list[str]:
    from lowres.io.hparams import plain_values
    from lowres.io.run_folder import hyperparams_path

    values = plain_values(hyperparams_path(run.folder))
    schedule = values.get("lr_schedule")
    not_used = {k for keys in SCHEDULE_KEYS.values() for k in keys} - set(
        SCHEDULE_KEYS.get(schedule, ()))
    if values.get("ssl_pooling", "mhfa") != "mhfa":  # MHFA's sizes, unused by other poolings
        from lowres.models.wav2vec2 import MHFA_SIZES

        not_used |= set(MHFA_SIZES)
    if "ssl_adaptation" in values:  # LoRA's and the adapters' keys, unused by other modes
        from lowres.models.ssl_adaptation import ADAPTATION_KEYS

        not_used |= {k for mode, keys in ADAPTATION_KEYS.items()
                     if mode != values["ssl_adaptation"] for k in keys}
    from lowres.data import augment
    from lowres.scoring import eval_settings

    not_used |= augment.unused_keys(values) | eval_settings.unused_keys(values)
    if (run.results or {}).get("test_precision"):
        values["test_precision"] = run.results["test_precision"]  # e.g. fp16 ran as fp32 on CPU
    rows = []
    for key, value in values.items():
        if key in _OPERATIONAL or key in not_used or value is None or isinstance(value, dict) \
                or (isinstance(value, str) and "/" in value):
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        rows.append(f"| {key} | {value} |")
    return rows


def _adaptation(run: RunForExport) -> str:
    """How the run's backbone adapted (``ssl_adaptation``), and how this folder holds it."""
    h = run.hparams
    return {
        "full": "fine-tuned whole"
                + (", its CNN frozen" if h.get("completely_freeze_feature_extractor") else ""),
        "frozen": "frozen: its pre-trained weights, unchanged",
        "lora": f"LoRA of rank {h.get('lora_rank')} (alpha {h.get('lora_alpha')}) on "
                f"{', '.join(map(str, h.get('lora_target_modules') or ()))} of every "
                "transformer layer, folded into those weights here (a plain `Wav2Vec2Model`)",
        "adapter": f"bottleneck adapters of width {h.get('adapter_bottleneck')} (GELU) after "
                   "the attention and the feed-forward block of every transformer layer, here "
                   "SpeechBrain's `HoulsbyAdapterLinear` around their `out_proj` and "
                   "`output_dense` in an `AdaptedModel`",
    }[run.embedder.adaptation]


def _trained(run: RunForExport) -> list[str]:
    """How many parameters trained, from the run's parameters.json (none before lowres
    wrote it)."""
    from lowres.io.run_folder import read_parameters

    counts = read_parameters(run.folder)
    if not counts:
        return []
    return [f"- Trained: {counts['trainable']:,} of the model's {counts['total']:,} parameters "
            f"({100 * counts['trainable'] / counts['total']:.1f} %; embedder and classifier, "
            "as trained)."]


def _architecture(run: RunForExport) -> list[str]:
    # LoRA's factors are folded into the weights they adapt: no parameters of the folder
    params = sum(p.numel() for name, p in run.embedder.named_parameters() if ".lora_" not in name)
    dim = run.classifier.weight.shape[1]
    lines = [f"- {_ARCHITECTURE[run.family]}; {dim}-dimensional embeddings, "
             f"{params / 1e6:.2f} M parameters in the embedder."]
    if run.family == "wav2vec2":
        c = run.embedder.wav2vec2.config
        lines.append(f"- wav2vec2: {c.num_hidden_layers} layers of width {c.hidden_size}, "
                     f"{len(c.conv_dim)}-layer CNN ({c.feat_extract_norm} norm); started from "
                     f"{_source(run.hparams.get('wav2vec2_source'))}"
                     + (" with random weights" if run.hparams.get("reset_weights") else "") + ".")
        lines.append(f"- Backbone (`ssl_adaptation: {run.embedder.adaptation}`): "
                     f"{_adaptation(run)}.")
    else:
        f = run.embedder.frontend
        lines.append(f"- Front-end: {f.n_mfcc} MFCCs from {f.filterbank.n_mels} mel bands, "
                     f"{1000 * f.stft.win_length / f.stft.sample_rate:g} ms Hann window, "
                     f"{1000 * f.stft.hop_length / f.stft.sample_rate:g} ms hop, per-utterance "
                     "mean/variance normalisation (SpecAugment in training only).")
    aam = getattr(run.hparams.get("loss"), "loss_fn", None)
    trained = (f" (trained with AAM softmax, margin {aam.margin:g}, scale {aam.scale:g})"
               if hasattr(aam, "margin") and hasattr(aam, "scale") else "")
    lines.append(f"- Classifier: cosine similarity to {run.classifier.weight.shape[0]} training "
                 f"speakers{trained}.")
    return lines + _trained(run)


def _source(source) -> str:
    """A checkpoint source as the card may show it: a hub id as it is, a local folder by its
    name only (its path is the exporting machine's)."""
    path = Path(str(source))
    if path.is_absolute() or path.exists():
        return f"the local checkpoint `{path.name}`"
    return f"`{source}`"


def _training_data(run: RunForExport) -> list[str]:
    subset = run.hparams.get("subset")
    unchecked = [] if run.corpus_found else [
        "- The training data was not on the machine that exported this folder, so whether "
        "it was the synthetic corpus could not be checked."]
    if not run.stats:
        return [f"- Subset `{subset}` (its stats.json was not found beside the training "
                "manifest).", *unchecked]
    tr, va = run.stats["train"], run.stats["val"]
    genders = ", ".join(f"{n} {g}" for g, n in tr.get("speakers_by_gender", {}).items())
    trials = run.stats.get("val_trials", {})
    return [
        f"- Subset `{subset}`: {tr['files']} files of {tr['speakers']} speakers ({genders}), "
        f"{tr['sessions']} sessions, {tr['hours']:g} h.",
        f"- Sessions per speaker: mean {tr['sessions_per_speaker']['mean']:g} "
        f"(min {tr['sessions_per_speaker']['min']}, max {tr['sessions_per_speaker']['max']}); "
        f"files per speaker: mean {tr['files_per_speaker']['mean']:g}.",
        f"- Validation: {va['files']} files, {trials.get('trials', '?')} trials "
        f"({trials.get('target', '?')} target).", *unchecked,
    ]


def _row(label: str, scores: str, entry: dict, calibrated: bool) -> str:
    cells = [label, scores, str(entry.get("n_trials")), _pct(entry.get("eer")),
             _num(entry.get("min_dcf_0.01")), _num(entry.get("min_dcf_0.05"))]
    if calibrated:
        cells += [_num(entry.get(k)) for k in ("min_cllr", "cllr", "act_dcf_0.05")]
    return "| " + " | ".join(cells) + " |"


def _results(run: RunForExport) -> list[str]:
    res = run.results
    if not res:
        return ["Not evaluated yet: run `recipes/VoxCeleb/eval.py` on the run folder and export "
                "again."]
    lines = []
    if res.get("diverged"):
        lines += [f"**Training diverged**: {res['diverged']}.", ""]
    tests = res.get("test_sets") or {}
    calibrated = any("cllr" in e for e in tests.values())
    rows = []
    order = [*(n for n in TEST_SET_LABELS if n in tests),
             *(n for n in tests if n not in TEST_SET_LABELS)]
    for name, entry in ((n, tests[n]) for n in order):
        label = TEST_SET_LABELS.get(name, name)
        rows.append(_row(label, "raw cosine", entry, calibrated))
        if entry.get("as_norm"):
            norm = entry["as_norm"]
            cohort = f", cohort {norm['cohort_size']}" if norm.get("cohort_size") else ""
            kind = f"top {norm['top_k']}" if norm.get("top_k") else "one-sided, whole cohort"
            rows.append(_row(label, f"AS-norm ({kind}{cohort})", norm, calibrated))
    if rows:
        head = "| test set | scores | trials | EER | minDCF (p 0.01) | minDCF (p 0.05) |"
        rule = "|---|---|---:|---:|---:|---:|"
        if calibrated:
            head += " min Cllr | Cllr | actDCF (p 0.05) |"
            rule += "---:|---:|---:|"
        lines += [head, rule, *rows, ""]
    val = res.get("validation") or {}
    if val:
        lines.append(f"Validation (whole utterances, {val.get('n_trials')} trials): EER "
                     f"{_pct(val.get('eer'))}.")
    cal = res.get("calibration")
    if cal and "scale" in cal:
        lines.append(f"Calibration (logistic regression on the validation trials, prior "
                     f"{cal.get('prior')}): LLR = {cal['scale']:.4f} x cosine "
                     f"{cal['offset']:+.4f}.")
    return lines


def _threshold(run: RunForExport, threshold) -> list[str]:
    if threshold is None:
        return ["None stored (the run has no validation results): choose one on your own "
                "trials."]
    eer = ((run.results or {}).get("validation") or {}).get("eer_threshold")
    lines = [f"Same speaker when the cosine score is at least **{threshold.score:.4f}** "
             f"({threshold.rule})"
             + (": the score whose LLR under the calibration below reaches the Bayes threshold, "
                "the decision of least expected cost when a pair is the same speaker with that "
                "prior and both errors cost the same" if threshold.llr is not None else "")
             + ". It is `threshold` in hyperparams.yaml (`threshold_rule` says what it is) and "
             "the decision `python -m lowres.verify` prints. Pass it to SpeechBrain's "
             "`verify_batch` (`threshold=`): its default of 0.25 is not this model's, and "
             "`verify_files` always decides at 0.25 (use its score only)."]
    if threshold.fallback:
        lines.append(f"Not the calibrated decision: {threshold.fallback}.")
    if threshold.llr is not None and eer is not None:
        lines.append(f"The EER threshold on the validation trials is {eer:.4f}.")
    return lines


def model_card(run: RunForExport, max_difference: float | None = None) -> str:
    """The folder's README.md."""
    meta = run.ckpt.meta
    threshold = decision_threshold(run)
    experiment = run.hparams.get("experiment", run.folder.name)
    out = ["---", "library_name: speechbrain",
           "tags: [speechbrain, speaker-recognition, speaker-verification, embeddings]", "---",
           "", f"# {experiment}: {_ARCHITECTURE[run.family].split(' (')[0]} speaker embeddings",
           ""]
    if run.synthetic_notice:
        out += ["> **SYNTHETIC: this model was trained on the synthetic corpus of "
                "`python -m prepare.synthetic`, not on VoxCeleb.**",
                f"> {run.synthetic_notice}", ""]
    out += [
        "Trained with the lowres SpeechBrain recipes, which reproduce *Training speaker "
        "recognition systems with limited data* (Vaessen & van Leeuwen, Interspeech 2022, "
        "[arXiv 2203.14688](https://arxiv.org/abs/2203.14688)). Exported from the "
        f"**{run.checkpoint}** checkpoint "
        f"(`{run.ckpt.path.name}`, step {meta.get('step')}, validation EER at that checkpoint "
        f"{_pct(meta.get('val_eer'))}) of the run `{run.folder.name}`.", "",
        "## Architecture", "", *_architecture(run), "",
        "## Training data", "", *_training_data(run), "",
        "## Hyperparameters", "",
        "Every value of the run's hyperparams.yaml that is a number, flag or name (file "
        "locations and loader settings left out):", "",
        "| key | value |", "|---|---|", *_hyperparameters(run), "",
        "## Results", "", *_results(run), "",
        "## Decision threshold", "", *_threshold(run, threshold), "",
        "## Use", "",
        "Needs `speechbrain` (exported with " + speechbrain.__version__ + ") and `torch` "
        f"(exported with {torch.__version__.split('+')[0]})"
        + (f", and `transformers` (exported with {_transformers_version()})"
           if run.family == "wav2vec2" else "")
        + "; no lowres code: hyperparams.yaml names only SpeechBrain, transformers and torch "
        "classes.", "",
        "```python",
        "from speechbrain.inference.speaker import EncoderClassifier, SpeakerRecognition",
        "",
        'model = EncoderClassifier.from_hparams(source="THIS_FOLDER", savedir="cache")',
        'wav = model.load_audio("a.wav")  # 16 kHz mono (resampled / downmixed)',
        "embedding = model.encode_batch(wav[None])  # [1, 1, D]",
        "scores, best, index, label = model.classify_batch(wav[None])  # training speakers",
        "",
        'verifier = SpeakerRecognition.from_hparams(source="THIS_FOLDER", savedir="cache")',
        'wav_a, wav_b = verifier.load_audio("a.wav"), verifier.load_audio("b.wav")',
        *(["score, _ = verifier.verify_batch(wav_a[None], wav_b[None])  # no threshold "
           "stored: choose one"] if threshold is None else [
            "# this run's threshold (also verifier.hparams.threshold): SpeechBrain's default "
            "is 0.25,",
            "# and verify_files always decides at 0.25",
            "score, same = verifier.verify_batch(wav_a[None], wav_b[None], "
            f"threshold={threshold.score:.4f})"]),
        "```", "",
        "The embeddings equal lowres's own (`SpeakerVerifier.from_run`) for one utterance at a "
        "time or a batch of equal lengths"
        + (f" (largest difference at export: {max_difference:.1e})"
           if max_difference is not None else "")
        + ". A padded batch of unequal lengths gives slightly different embeddings: "
        + ("wav2vec2's group-norm CNN normalises over the padding."
           if run.family == "wav2vec2" else
           "the TDNN convolutions see the padding at an utterance's end.")
        + " An ONNX export (`python -m lowres.export RUN --onnx FILE`) has no lengths input: "
        "it embeds each row of `waveform` whole, zero padding included, so give it one "
        "recording at a time or recordings of equal length.", "",
        "## Files", "",
        "- `hyperparams.yaml`: the modules (`compute_features`, `mean_var_norm`, "
        "`embedding_model`, `classifier`, `label_encoder`, `pretrainer`).",
        "- `embedding_model.ckpt`, `classifier.ckpt`: state dicts of tensors only "
        "(`torch.load(..., weights_only=True)` loads them).",
        "- `label_encoder.ckpt`: the training speakers, SpeechBrain's plain-text "
        "CategoricalEncoder format (the Pretrainer fetches `<source>/<name>.ckpt`).", "",
        "## Upload to the HuggingFace hub", "",
        "With `huggingface_hub`'s command line (`huggingface-cli` in versions before 0.34); it "
        "creates the repository if needed:", "",
        "```bash",
        "hf auth login   # once, with a write token",
        "hf upload USER/REPO THIS_FOLDER . --repo-type model",
        "```", "",
        "or from Python:", "",
        "```python",
        "from huggingface_hub import HfApi",
        "",
        "api = HfApi()",
        'api.create_repo("USER/REPO", repo_type="model", exist_ok=True)',
        'api.upload_folder(folder_path="THIS_FOLDER", repo_id="USER/REPO", repo_type="model")',
        "```", "",
        "Then `EncoderClassifier.from_hparams(source=\"USER/REPO\", savedir=...)` loads it.",
        "", "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(out)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
