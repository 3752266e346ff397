"""wav2vec2 speaker embedder (STUDY.md §2) on HuggingFace transformers' ``Wav2Vec2Model``.

waveform -> zero mean / unit variance over the utterance's valid samples -> wav2vec2 ->
mean over the valid frames of the last transformer layer -> dropout (0.05) -> [B, hidden].

Options of the study:
- ``reset_weights``: random initialisation from the checkpoint's config instead of its weights.
- ``completely_freeze_feature_extractor``: the CNN feature encoder never trains.
- ``set_backbone_frozen(True)``: CNN + transformer run in eval mode under ``torch.no_grad``,
  so no gradient is computed for (or accumulated in) them; only what follows trains.
  The schedule (``wav2vec_initially_frozen`` + ``num_frozen_steps``) is lowres.models.freeze.
- ``regularisation``: one of ``REGULARISATION_PRESETS`` (below), written into the model config
  *before* the model is built, since transformers reads the dropout rates when it creates the
  layers and skips SpecAugment unless ``mask_time_prob`` / ``mask_feature_prob`` are > 0 at
  build time (``masked_spec_embed``) and at forward time.
- ``faithful_time_masking``: the original code's flaw. Its time-masking probability never
  reached the model, so every published run masked time with the checkpoint's own default,
  p 0.05 and length 10, whatever the preset said. ``True`` (paper-faithful, default)
  reproduces that: the preset's time masking is replaced by p 0.05 / length 10, everything
  else as the preset says. ``False`` applies the preset as written.

Padding: the group-norm CNN of wav2vec2-base normalises over the whole padded input, so a
padded utterance does not embed exactly as it does alone (``padding_invariant = False``:
extract test embeddings one file at a time). Following transformers' guidance, an attention
mask is passed only to models with a layer-norm CNN (``feat_extract_norm == "layer"``);
group-norm models get zero-padded input, as in their pre-training.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from lowres.models.features import valid_samples
from lowres.models.freeze import apply_freeze_schedule, backbone_frozen_at

__all__ = [
    "FAITHFUL_TIME_MASKING",
    "REGULARISATION_PRESETS",
    "Wav2vec2Embedder",
    "apply_freeze_schedule",
    "backbone_frozen_at",
    "regularisation_config",
]

_DROPOUT = {"activation_dropout": 0.1, "attention_dropout": 0.1, "feat_proj_dropout": 0.1,
            "hidden_dropout": 0.1}
_NO_DROPOUT = dict.fromkeys(_DROPOUT, 0.0)
_LAYERDROP = {"layerdrop": 0.1}
_NO_LAYERDROP = {"layerdrop": 0.0}
_MASKING = {"mask_time_prob": 0.5, "mask_time_length": 10,
            "mask_feature_prob": 0.1, "mask_feature_length": 64}
_NO_MASKING = {"mask_time_prob": 0.0, "mask_time_length": 10,
               "mask_feature_prob": 0.0, "mask_feature_length": 64}

#: Regularisation presets of the ablation (STUDY.md §2), as transformers config values.
REGULARISATION_PRESETS: dict[str, dict[str, float]] = {
    "default": {**_DROPOUT, **_LAYERDROP, **_MASKING},
    "none": {**_NO_DROPOUT, **_NO_LAYERDROP, **_NO_MASKING},
    "only_dropout": {**_DROPOUT, **_NO_LAYERDROP, **_NO_MASKING},
    "only_masking": {**_NO_DROPOUT, **_NO_LAYERDROP, **_MASKING},
    "only_layerdrop": {**_NO_DROPOUT, **_LAYERDROP, **_NO_MASKING},
}

#: Time masking every published run actually had (the checkpoint default).
FAITHFUL_TIME_MASKING = {"mask_time_prob": 0.05, "mask_time_length": 10}


def regularisation_config(preset: str, faithful_time_masking: bool = True) -> dict[str, float]:
    """transformers config values for ``preset`` (see the module docstring)."""
    if preset not in REGULARISATION_PRESETS:
        raise ValueError(
            f"regularisation {preset!r} is unknown; valid: {', '.join(REGULARISATION_PRESETS)}"
        )
    values = dict(REGULARISATION_PRESETS[preset])
    if faithful_time_masking:
        values.update(FAITHFUL_TIME_MASKING)
    return values


def normalise_waveform(wavs: torch.Tensor, n_valid: torch.Tensor, eps: float = 1e-7):
    """Zero mean, unit variance over each utterance's first ``n_valid`` samples; 0 after."""
    mask = (torch.arange(wavs.shape[1], device=wavs.device)[None] < n_valid[:, None]).float()
    n = n_valid[:, None].float()
    mean = (wavs * mask).sum(1, keepdim=True) / n
    var = ((wavs - mean) * mask).square().sum(1, keepdim=True) / n
    return (wavs - mean) / torch.sqrt(var + eps) * mask, mask


class Wav2vec2Embedder(torch.nn.Module):
    """wav2vec2 + mean pooling over valid frames + dropout: forward(wavs, lens) -> [B, hidden]."""

    padding_invariant = False

    def __init__(
        self,
        source: str,
        reset_weights: bool = False,
        regularisation: str = "default",
        faithful_time_masking: bool = True,
        completely_freeze_feature_extractor: bool = True,
        gradient_checkpointing: bool = True,
        dropout: float = 0.05,
        cache_dir: str | None = None,
    ):
        super().__init__()
        values = regularisation_config(regularisation, faithful_time_masking)
        if isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        config = Wav2Vec2Config.from_pretrained(source, cache_dir=cache_dir)
        for key, value in values.items():
            setattr(config, key, value)
        config.apply_spec_augment = True
        if reset_weights:
            self.wav2vec2 = Wav2Vec2Model(config)
        else:
            self.wav2vec2 = Wav2Vec2Model.from_pretrained(
                source, config=config, cache_dir=cache_dir
            )
        if gradient_checkpointing:
            self.wav2vec2.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self.feature_extractor_frozen = bool(completely_freeze_feature_extractor)
        if self.feature_extractor_frozen:
            self.wav2vec2.freeze_feature_encoder()
        self.source = str(source)
        self.regularisation = regularisation
        self.faithful_time_masking = bool(faithful_time_masking)
        self.use_attention_mask = config.feat_extract_norm == "layer"
        self.embedding_dim = config.hidden_size
        self.dropout = torch.nn.Dropout(dropout)
        self.backbone_frozen = False

    # -- freezing --------------------------------------------------------------------------
    def set_backbone_frozen(self, frozen: bool) -> None:
        """Frozen: wav2vec2 in eval mode under no_grad (no gradient, none accumulates)."""
        self.backbone_frozen = bool(frozen)
        self.wav2vec2.train(self.training and not self.backbone_frozen)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:
            self.wav2vec2.eval()
        return self

    # -- forward ---------------------------------------------------------------------------
    def frame_lengths(self, n_samples: torch.Tensor) -> torch.Tensor:
        """Valid output frames of the CNN for ``n_samples`` valid input samples."""
        frames = self.wav2vec2._get_feat_extract_output_lengths(n_samples)
        return torch.as_tensor(frames).long().clamp(min=1)

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        if wavs.dim() != 2:
            raise ValueError(
                f"Wav2vec2Embedder expects wavs [batch, samples], got {tuple(wavs.shape)}"
            )
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        n_valid = valid_samples(lens, wavs.shape[1]).to(wavs.device)
        x, mask = normalise_waveform(wavs.float(), n_valid)
        attention_mask = mask.long() if self.use_attention_mask else None
        grad = contextlib.nullcontext() if not self.backbone_frozen else torch.no_grad()
        with grad:
            hidden = self.wav2vec2(x, attention_mask=attention_mask).last_hidden_state
        frames = self.frame_lengths(n_valid).clamp(max=hidden.shape[1])
        valid = torch.arange(hidden.shape[1], device=hidden.device)[None] < frames[:, None]
        pooled = (hidden * valid[:, :, None]).sum(1) / frames[:, None].to(hidden.dtype)
        return self.dropout(pooled)
