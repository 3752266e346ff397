"""wav2vec2 speaker embedder (docs/study.md, 'Models' and 'wav2vec2 in the published runs')
on HuggingFace transformers' ``Wav2Vec2Model``, or on another audio SSL model with the same
interface (HuBERT, WavLM, data2vec-audio).

waveform -> zero mean / unit variance over the utterance's valid samples -> wav2vec2 ->
mean over the valid frames of the last transformer layer -> dropout (the preset's
``final_dropout``) -> [B, hidden].

Backbones (``source`` = ``wav2vec2_source``): the model class comes from the checkpoint's
``config.json`` ``model_type`` through the explicit map ``SSL_MODEL_CLASSES`` (wav2vec2 ->
``Wav2Vec2Model``, both CNN norms and ``do_stable_layer_norm``; hubert -> ``HubertModel``;
wavlm -> ``WavLMModel``; data2vec-audio -> ``Data2VecAudioModel``), or from ``model_type``
to force one. Loading is strict (``load_backbone``): every weight of the model must come
from the checkpoint and every checkpoint tensor must land in the model, except the heads of
pre-training or ASR fine-tuning (``IGNORED_HEADS``: the hub keeps facebook/wav2vec2-base as
``Wav2Vec2ForPreTraining``, quantizer and projections beside the ``wav2vec2.`` backbone),
which are dropped with a log line; transformers itself only warns and initialises what is
missing at random. The backbone is the attribute ``wav2vec2`` whatever its family. A source
transformers cannot read (a missing folder, a hub id on a machine without internet) is an
``HparamsError`` that says how to get the model there (``_unloadable_source``).

Pooling (``pooling``, yaml ``ssl_pooling``): ``last`` (the study) pools the last layer;
``weighted_sum`` pools a learned softmax-weighted sum of all hidden states (the CNN
projection's and each layer's, SUPERB), weights initialised equal and computed outside
the frozen backbone's ``no_grad``, so they train while the backbone is frozen.
``mhfa``: multi-head factorized attentive pooling (lowres.models.mhfa, Peng et al., SLT 2022)
on all hidden states, also outside the ``no_grad``; its ``mhfa_embedding_dim``-d output is
the embedding, followed by the head dropout. It needs at least one transformer layer (two
hidden states: keys and values are learned weightings of the layers), which every family
with a transformer has; a config without one is refused before any weight is loaded.
``backend``: a module factory called with ``input_size=hidden`` (e.g. SpeechBrain's
``ECAPA_TDNN``, hparams/shared/ssl_ecapa.yaml) that replaces mean pooling and the head
dropout: the (weighted) hidden states [B, frames, hidden] and their relative lengths go
in, its embedding comes out. ``mhfa`` and ``backend`` both replace the pooling: together
they are refused (``check_mhfa``, also called by train.py's checks).

Adaptation (``adaptation``, yaml ``ssl_adaptation``; lowres.models.ssl_adaptation): ``full``
(the study: the backbone fine-tunes), ``frozen`` (it never trains), ``lora`` or ``adapter``
(its weights stay, LoRA or bottleneck-adapter weights added to it train), set up after
loading, the presets and the freeze of the CNN.

Options of the study. Each behaviour of the original code (w2v2-speaker-few-samples) is the
default; where that was a bug, the described behaviour is one ``*_as_published: False`` away.

- ``regularisation``: one of ``REGULARISATION_PRESETS`` (the original's
  config/network/regularisation/wav2vec2_<preset>.yaml). ``regularisation_as_published``:
  - ``True`` (default, a bug of the original): as the values reached the published runs'
    model. The original wrote the preset into the config, but then swapped in the
    transformer layers of a model loaded with the checkpoint's own config, so inside the
    layers (attention dropout, residual dropout, feed-forward activation dropout) the
    checkpoint's values applied; from the preset reached ``feat_proj_dropout``, the dropout
    on the transformer's input (``encoder.dropout``, the preset's ``hidden_dropout``),
    ``layerdrop``, ``mask_feature_prob`` / ``mask_feature_length`` and ``mask_time_length``;
    ``mask_time_prob`` (and ``apply_spec_augment``) stayed the checkpoint's (wav2vec2-base:
    attention 0.1, hidden 0.1, activation 0.0, time masking p 0.05, so every published run
    masked time with p 0.05 whatever the preset said).
  - ``False``: every preset value as written.
  Config values are written *before* the model is built, since transformers reads the
  dropout rates when it creates the layers and skips SpecAugment unless ``mask_time_prob`` /
  ``mask_feature_prob`` are > 0 at build time (``masked_spec_embed``) and at forward time.
  The head dropout is the preset's ``final_dropout`` in both modes (it reached the model):
  0.05 for default and only_dropout, 0.0 for none, only_masking and only_layerdrop.
- ``reset_weights``: start from random weights. ``reset_weights_as_published``:
  - ``True`` (default, a bug of the original, src/util/torch.py ``reset_model``): load the
    checkpoint, then call ``reset_parameters()`` of each module that has one
    (``reset_module_parameters``). Not a full random initialisation: the weight-normed
    positional convolution keeps its pre-trained effective weight (its ``reset_parameters``
    re-draws only a temporary ``weight``, recomputed from the weight-norm parameters at
    every forward; its bias is reset), and ``masked_spec_embed`` is not reset. The new
    values follow torch's module defaults, not transformers' initialisation.
  - ``False``: transformers' random initialisation of a model built from the config.
- ``completely_freeze_feature_extractor``: the CNN feature encoder never trains.
- ``set_backbone_frozen(True, train_mode)``: CNN + transformer run under ``torch.no_grad``,
  so no gradient is computed for (or accumulated in) them; only what follows trains. With
  ``train_mode=False`` the frozen backbone is in eval mode; with ``True`` it follows the
  embedder's train/eval mode (dropout, layerdrop, masking on in training), as the published
  runs did after their first validation. The schedule (``wav2vec_initially_frozen`` +
  ``num_frozen_steps``, ``frozen_backbone_as_published``) is lowres.models.freeze.

Families: the presets write the same config keys for each family (all four configs have
them; a family lacking one is refused by name); ``reset_weights_as_published`` resets each
module with ``reset_parameters()``, which keeps, besides the above, WavLM's
``gru_rel_pos_const`` (a parameter of the attention module itself); data2vec-audio's
positional convolutions are not weight-normed and its CNN is always layer-normed (so it
gets an attention mask).

Padding: the group-norm CNN of wav2vec2-base normalises over the whole padded input, so a
padded utterance does not embed exactly as it does alone (``padding_invariant = False``:
extract test embeddings one file at a time). Following transformers' guidance, an attention
mask is passed only to models with a layer-norm CNN (``feat_extract_norm == "layer"``);
group-norm models get zero-padded input, as in their pre-training.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    Data2VecAudioModel,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Model,
    WavLMModel,
)

from lowres.io.hparams import HparamsError, invalid_hparam
from lowres.models.features import valid_samples
from lowres.models.freeze import apply_freeze_schedule, backbone_frozen_at
from lowres.models.mhfa import MHFA
from lowres.models.ssl_adaptation import adapt_backbone
from lowres.models.xvector_ecapa import embedding_dim_of

__all__ = [
    "FROM_PRESET_AS_PUBLISHED",
    "IGNORED_HEADS",
    "POOLINGS",
    "REGULARISATION_PRESETS",
    "SSL_MODEL_CLASSES",
    "Wav2vec2Embedder",
    "apply_freeze_schedule",
    "backbone_frozen_at",
    "check_mhfa",
    "load_backbone",
    "regularisation_config",
    "reset_module_parameters",
]

logger = logging.getLogger(__name__)

#: config.json ``model_type`` -> the backbone class built for it (``ssl_model_type``)
SSL_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "wav2vec2": Wav2Vec2Model,
    "hubert": HubertModel,
    "wavlm": WavLMModel,
    "data2vec-audio": Data2VecAudioModel,
}
#: checkpoint tensors that are no part of the backbone: wav2vec2's quantizer and
#: projections (Wav2Vec2ForPreTraining), HuBERT's final_proj and label embeddings, a CTC
#: head (lm_head); dropped at loading, with a log line
IGNORED_HEADS = ("quantizer.", "project_q.", "project_hid.", "final_proj.",
                 "label_embeddings_concat", "label_embs_concat", "lm_head.")
POOLINGS = ("last", "weighted_sum", "mhfa")
#: the yaml keys of MHFA's sizes (hparams/shared/wav2vec2.yaml)
MHFA_SIZES = ("mhfa_heads", "mhfa_compression_dim", "mhfa_embedding_dim")

_DROPOUT = {"activation_dropout": 0.1, "attention_dropout": 0.1, "feat_proj_dropout": 0.1,
            "hidden_dropout": 0.1, "final_dropout": 0.05}
_NO_DROPOUT = dict.fromkeys(_DROPOUT, 0.0)
_LAYERDROP = {"layerdrop": 0.1}
_NO_LAYERDROP = {"layerdrop": 0.0}
_MASKING = {"mask_time_prob": 0.5, "mask_time_length": 10,
            "mask_feature_prob": 0.1, "mask_feature_length": 64}
_NO_MASKING = {"mask_time_prob": 0.0, "mask_time_length": 10,
               "mask_feature_prob": 0.0, "mask_feature_length": 64}

#: Regularisation presets of the ablation (docs/study.md, 'Models'), as the original's
#: config/network/regularisation/wav2vec2_<preset>.yaml write them: transformers config
#: values, and ``final_dropout``, the dropout of this embedder's head.
REGULARISATION_PRESETS: dict[str, dict[str, float]] = {
    "default": {**_DROPOUT, **_LAYERDROP, **_MASKING},
    "none": {**_NO_DROPOUT, **_NO_LAYERDROP, **_NO_MASKING, "mask_feature_length": 10},
    "only_dropout": {**_DROPOUT, **_NO_LAYERDROP, **_NO_MASKING},
    "only_masking": {**_NO_DROPOUT, **_NO_LAYERDROP, **_MASKING},
    "only_layerdrop": {**_NO_DROPOUT, **_LAYERDROP, **_NO_MASKING},
}

#: Preset values the published runs' config took (docs/study.md, 'wav2vec2 in the
#: published runs'); the preset's ``hidden_dropout`` reached only the dropout on the
#: transformer's input.
FROM_PRESET_AS_PUBLISHED = ("feat_proj_dropout", "layerdrop", "mask_feature_prob",
                            "mask_feature_length", "mask_time_length")


def _preset(preset: str) -> dict[str, float]:
    if preset not in REGULARISATION_PRESETS:
        raise ValueError(
            f"regularisation {preset!r} is unknown; valid: {', '.join(REGULARISATION_PRESETS)}"
        )
    return REGULARISATION_PRESETS[preset]


def regularisation_config(preset: str, as_published: bool = True) -> dict[str, float]:
    """transformers config values ``preset`` writes over the checkpoint's (module docstring).

    As published: only ``FROM_PRESET_AS_PUBLISHED``; otherwise every value of the preset,
    with SpecAugment on. The head's ``final_dropout`` is not a config value of the model.
    """
    values = _preset(preset)
    if as_published:
        return {key: values[key] for key in FROM_PRESET_AS_PUBLISHED}
    return {**{k: v for k, v in values.items() if k != "final_dropout"},
            "apply_spec_augment": True}


def _unloadable_source(source: str, err: Exception) -> HparamsError:
    """The error for a ``wav2vec2_source`` that transformers cannot read: why (a missing
    folder said plainly, else the first line of transformers' own reason) and the fix for a
    compute node without internet."""
    path_like = Path(source).is_absolute() or source.startswith(".")
    if path_like and not Path(source).exists():
        reason = "no such folder"
    else:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    hub_id = "HUB_ID" if path_like else source
    return invalid_hparam(
        "wav2vec2_source", source, f"cannot be loaded ({reason}). Download it once where there "
        f"is internet (huggingface-cli download {hub_id} --local-dir D) and pass "
        "--wav2vec2_source D, or set HF_HUB_OFFLINE=1 with a Hugging Face cache that holds it")


def backbone_config(source: str, model_type: str = "auto", cache_dir: str | None = None
                    ) -> tuple[type[PreTrainedModel], PretrainedConfig]:
    """The backbone class for the checkpoint's own ``model_type`` (``auto``) or for
    ``model_type`` (forcing one; a mismatch then fails in ``load_backbone``), and the
    checkpoint's config read as that class's config."""
    try:
        config = AutoConfig.from_pretrained(source, cache_dir=cache_dir)
    except (OSError, ValueError) as err:  # no such folder, no config.json, offline hub id
        raise _unloadable_source(source, err) from err
    model_type = config.model_type if model_type == "auto" else model_type
    if model_type not in SSL_MODEL_CLASSES:
        raise ValueError(f"{source}: model_type {model_type!r} is not a supported SSL "
                         f"backbone; valid: auto, {', '.join(SSL_MODEL_CLASSES)}")
    if config.model_type != model_type:
        config = SSL_MODEL_CLASSES[model_type].config_class.from_pretrained(
            source, cache_dir=cache_dir)
    return SSL_MODEL_CLASSES[model_type], config


def check_mhfa(pooling: str, has_backend: bool, sizes: dict[str, object]) -> None:
    """With ``ssl_pooling: mhfa``: no ``ssl_backend`` (each replaces the pooling) and
    ``sizes`` (``MHFA_SIZES`` -> value) positive integers; else an HparamsError naming the
    key and value. Nothing to check for the other poolings."""
    if pooling != "mhfa":
        return
    if has_backend:
        raise invalid_hparam("ssl_pooling", pooling, "cannot be combined with an ssl_backend "
                             "(both replace the pooling): set ssl_backend: null, or another "
                             "ssl_pooling")
    for key in MHFA_SIZES:
        value = sizes.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise invalid_hparam(key, value, "must be a positive integer (ssl_pooling mhfa)")


def _masks(config: PretrainedConfig) -> bool:
    """Whether a model built from ``config`` has ``masked_spec_embed`` (SpecAugment)."""
    return config.mask_time_prob > 0 or config.mask_feature_prob > 0


def load_backbone(model_class: type[PreTrainedModel], source: str, config: PretrainedConfig,
                  checkpoint_config: PretrainedConfig, cache_dir: str | None = None
                  ) -> PreTrainedModel:
    """``model_class`` with every weight from ``source``, or an error.

    transformers only warns when checkpoint and model keys differ (and initialises the
    missing weights at random): here a model weight missing from the checkpoint, a
    checkpoint tensor the model has no place for (e.g. WavLM's relative position bias in a
    Wav2Vec2Model), or a shape mismatch is a ``ValueError`` naming the keys. Allowed:
    ``IGNORED_HEADS`` (logged), and ``masked_spec_embed`` missing from the checkpoint where
    its own config had no masking (so it never saved one) but the preset masks, or unused
    where the preset masks nothing (logged).
    """
    try:
        model, info = model_class.from_pretrained(source, config=config, cache_dir=cache_dir,
                                                  output_loading_info=True)
    except OSError as err:  # config.json without the weights
        raise _unloadable_source(source, err) from err
    mask = "masked_spec_embed"
    missing = [k for k in info["missing_keys"] if not (k == mask and not _masks(checkpoint_config))]
    unexpected = [k for k in info["unexpected_keys"]
                  if not (k.startswith(IGNORED_HEADS) or k == mask and not _masks(config))]
    problems = []
    if missing:
        problems.append(f"weights of the model missing from the checkpoint (transformers "
                        f"would initialise them at random): {', '.join(sorted(missing))}")
    if unexpected:
        problems.append(f"checkpoint tensors the model has no place for (transformers would "
                        f"drop them): {', '.join(sorted(unexpected))}")
    if info["mismatched_keys"]:
        problems.append(f"tensors of another shape: {info['mismatched_keys']}")
    if problems:
        raise ValueError(f"wav2vec2_source {source} does not load into {model_class.__name__} "
                         f"(config.json model_type {config.model_type}): " + "; ".join(problems)
                         + ". Is ssl_model_type right (auto reads config.json)?")
    ignored = sorted(set(info["unexpected_keys"]) - set(unexpected))
    if ignored:
        logger.info("%s: loaded %s; ignored the checkpoint's tensors %s (heads, or the mask "
                    "embedding of a model that does not mask)", source, model_class.__name__,
                    ", ".join(ignored))
    if set(info["missing_keys"]) - set(missing):
        logger.info("%s: masked_spec_embed initialised at random (the checkpoint had no "
                    "masking, the preset masks)", source)
    return model


def prepare_backbone(backbone: PreTrainedModel, freeze_cnn: bool,
                     gradient_checkpointing: bool) -> bool:
    """Set up a backbone as its yaml keys ask (fine-tuning and every pre-training objective):
    non-reentrant gradient checkpointing of its layers, its CNN frozen (what
    ``Wav2Vec2Model.freeze_feature_encoder`` does; HubertModel has no such method). True if it
    takes an attention mask: a layer-norm CNN (data2vec-audio's config has no
    ``feat_extract_norm``: its CNN is layer-normed); a group-norm one must not see padding
    masked, as in fairseq."""
    if gradient_checkpointing:
        backbone.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if freeze_cnn:
        backbone.feature_extractor._freeze_parameters()
    return getattr(backbone.config, "feat_extract_norm", "layer") == "layer"


def reset_module_parameters(module: torch.nn.Module) -> None:
    """``reset_parameters()`` of each submodule that has one, as the original's ``reset_model``.

    A module that resets itself is not descended into; parameters held directly by a module
    without ``reset_parameters`` (``Wav2Vec2Model.masked_spec_embed``) keep their values, and
    so does the effective weight of a weight-normed convolution (see the module docstring).
    """
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_module_parameters(child)


def normalise_waveform(wavs: torch.Tensor, n_valid: torch.Tensor, eps: float = 1e-7):
    """Zero mean, unit variance over each utterance's first ``n_valid`` samples; 0 after."""
    mask = (torch.arange(wavs.shape[1], device=wavs.device)[None] < n_valid[:, None]).float()
    n = n_valid[:, None].float()
    mean = (wavs * mask).sum(1, keepdim=True) / n
    var = ((wavs - mean) * mask).square().sum(1, keepdim=True) / n
    return (wavs - mean) / torch.sqrt(var + eps) * mask, mask


class Wav2vec2Embedder(torch.nn.Module):
    """SSL backbone + mean pooling over valid frames (or MHFA, or ``backend``) + dropout:
    forward(wavs, lens) -> [B, hidden] (or MHFA's / the backend's [B, D])."""

    padding_invariant = False

    def __init__(
        self,
        source: str,
        reset_weights: bool = False,
        reset_weights_as_published: bool = True,
        regularisation: str = "default",
        regularisation_as_published: bool = True,
        completely_freeze_feature_extractor: bool = True,
        gradient_checkpointing: bool = True,
        dropout: float | None = None,
        cache_dir: str | None = None,
        model_type: str = "auto",
        pooling: str = "last",
        backend: Callable[..., torch.nn.Module] | None = None,
        mhfa_heads: int = 64,
        mhfa_compression_dim: int = 128,
        mhfa_embedding_dim: int = 256,
        adaptation: str = "full",
        lora_rank: int = 8,
        lora_alpha: float = 16,
        lora_dropout: float = 0.0,
        lora_target_modules: Sequence[str] = ("q_proj", "v_proj"),
        adapter_bottleneck: int = 64,
    ):
        super().__init__()
        preset = _preset(regularisation)
        dropout = preset["final_dropout"] if dropout is None else dropout
        if isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"ssl_pooling {pooling!r} is unknown; valid: {', '.join(POOLINGS)}")
        check_mhfa(pooling, backend is not None, {
            "mhfa_heads": mhfa_heads, "mhfa_compression_dim": mhfa_compression_dim,
            "mhfa_embedding_dim": mhfa_embedding_dim})
        model_class, config = backbone_config(source, model_type, cache_dir)
        if pooling == "mhfa" and getattr(config, "num_hidden_layers", 0) < 1:
            raise invalid_hparam("ssl_pooling", pooling, f"needs a backbone with transformer "
                                 f"layers (keys and values weight its hidden states); "
                                 f"{source} has num_hidden_layers="
                                 f"{getattr(config, 'num_hidden_layers', None)}")
        checkpoint_config = copy.deepcopy(config)
        # WavLM's feature masking reads mask_feature_min_masks, which WavLMConfig lacks
        # (transformers 4.57): wav2vec2's default, 0
        config.mask_feature_min_masks = getattr(config, "mask_feature_min_masks", 0)
        for key, value in regularisation_config(regularisation,
                                                regularisation_as_published).items():
            # apply_spec_augment: read with getattr(config, ..., True) by every family
            if key != "apply_spec_augment" and not hasattr(config, key):
                raise ValueError(f"regularisation {regularisation!r} sets {key}, which a "
                                 f"{config.model_type} model has not ({source})")
            setattr(config, key, value)
        if reset_weights and not reset_weights_as_published:
            self.wav2vec2 = model_class(config)
        else:
            self.wav2vec2 = load_backbone(model_class, source, config, checkpoint_config,
                                          cache_dir)
            if reset_weights:
                reset_module_parameters(self.wav2vec2)
        if regularisation_as_published:
            # the one place the preset's hidden_dropout reached (the layers kept the config's)
            self.wav2vec2.encoder.dropout.p = preset["hidden_dropout"]
        self.feature_extractor_frozen = bool(completely_freeze_feature_extractor)
        self.use_attention_mask = prepare_backbone(self.wav2vec2, self.feature_extractor_frozen,
                                                   gradient_checkpointing)
        adapt_backbone(self.wav2vec2, adaptation, lora_rank, lora_alpha, lora_dropout,
                       lora_target_modules, adapter_bottleneck)
        self.adaptation = adaptation
        self.backbone_trains = adaptation != "frozen"  # the freeze schedule reads it
        self.source = str(source)
        self.regularisation = regularisation
        self.regularisation_as_published = bool(regularisation_as_published)
        self.pooling = pooling
        if pooling == "weighted_sum":  # the CNN projection's output + one per layer
            self.layer_weights = torch.nn.Parameter(torch.zeros(config.num_hidden_layers + 1))
        self.backend = None if backend is None else backend(input_size=config.hidden_size)
        self.embedding_dim = config.hidden_size if backend is None else \
            embedding_dim_of(self.backend)
        if pooling == "mhfa":
            self.mhfa = MHFA(config.num_hidden_layers + 1, config.hidden_size, mhfa_heads,
                             mhfa_compression_dim, mhfa_embedding_dim)
            self.embedding_dim = mhfa_embedding_dim
        self.dropout = torch.nn.Dropout(dropout if backend is None else 0.0)
        self.backbone_frozen = False
        self.frozen_train_mode = False
        if not self.backbone_trains:
            self.set_backbone_frozen(True)

    # -- freezing --------------------------------------------------------------------------
    def set_backbone_frozen(self, frozen: bool, train_mode: bool = False) -> None:
        """Frozen: wav2vec2 under no_grad (no gradient, none accumulates), in eval mode, or
        with ``train_mode`` in the embedder's own mode (dropout, layerdrop, masking on)."""
        self.backbone_frozen = bool(frozen)
        self.frozen_train_mode = bool(train_mode)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen and not self.frozen_train_mode:
            self.wav2vec2.eval()
        return self

    # -- forward ---------------------------------------------------------------------------
    def frame_lengths(self, n_samples: torch.Tensor) -> torch.Tensor:
        """Valid output frames of the CNN for ``n_samples`` valid input samples."""
        frames = self.wav2vec2._get_feat_extract_output_lengths(n_samples)
        return torch.as_tensor(frames).long().clamp(min=1)

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None,
                normalised: bool = False) -> torch.Tensor:
        """``normalised``: ``wavs`` are normalised already (crops of utterances normalised
        with the whole file's statistics, lowres.data.loading); padding is still zeroed."""
        if wavs.dim() != 2:
            raise ValueError(
                f"Wav2vec2Embedder expects wavs [batch, samples], got {tuple(wavs.shape)}"
            )
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        n_valid = valid_samples(lens, wavs.shape[1]).to(wavs.device)
        x, mask = normalise_waveform(wavs.float(), n_valid)
        if normalised:
            x = wavs.float() * mask
        attention_mask = mask.long() if self.use_attention_mask else None
        weighted = self.pooling == "weighted_sum"
        grad = contextlib.nullcontext() if not self.backbone_frozen else torch.no_grad()
        with grad:
            out = self.wav2vec2(x, attention_mask=attention_mask,
                                output_hidden_states=self.pooling != "last")
        frames = self.frame_lengths(n_valid).clamp(max=out.last_hidden_state.shape[1])
        # outside no_grad: the layer weights (and MHFA) train while the backbone is frozen
        if self.pooling == "mhfa":
            return self.dropout(self.mhfa(out.hidden_states, frames))
        hidden = self.weighted_hidden_states(out.hidden_states) if weighted else \
            out.last_hidden_state
        if self.backend is not None:
            emb = self.backend(hidden, frames.to(hidden.dtype) / hidden.shape[1])
            return self.dropout(emb.reshape(emb.shape[0], -1))  # ECAPA: [B, 1, D] -> [B, D]
        valid = torch.arange(hidden.shape[1], device=hidden.device)[None] < frames[:, None]
        pooled = (hidden * valid[:, :, None]).sum(1) / frames[:, None].to(hidden.dtype)
        return self.dropout(pooled)

    def weighted_hidden_states(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Softmax(``layer_weights``)-weighted sum of the hidden states: [B, frames, hidden]."""
        if len(hidden_states) != len(self.layer_weights):
            raise ValueError(f"{len(hidden_states)} hidden states for "
                             f"{len(self.layer_weights)} layer weights")
        weights = torch.softmax(self.layer_weights, 0).to(hidden_states[0].dtype)
        return torch.einsum("l,lbth->bth", weights, torch.stack(hidden_states))
