"""MFCC front-end of the x-vector and ECAPA-TDNN models (docs/study.md, 'Models').

waveform -> 80 MFCCs from 128 mel bands (25 ms Hann window, 12.5 ms hop, log-power in dB,
80 dB dynamic range per utterance) -> SpecAugment on the MFCC matrix (train mode only:
5-10 time masks of up to 10 frames, 1-3 masks of up to 4 coefficients, masked values set to
0) -> mean/variance normalisation per coefficient over each utterance's valid frames.

This is the study's pipeline (torchaudio's ``MFCC(n_mfcc=80)`` defaults, SpecAugment before
normalisation) built from SpeechBrain blocks (``STFT``, ``Filterbank``, ``DCT``,
``SpectrogramDrop``). One deliberate difference: the STFT pads the
signal with zeros (SpeechBrain's default) instead of reflecting it, so a frame of a
zero-padded utterance in a batch is bit-for-bit the frame of the same utterance alone; only
frames past the utterance's end differ, and those are excluded by the frame lengths.
The normalisation uses an integer frame mask rather than SpeechBrain's
``InputNormalization``, whose relative-length mask can count one frame too many in float32.
"""

from __future__ import annotations

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.processing.features import (
    DCT,
    STFT,
    Filterbank,
    spectral_magnitude,
)

from lowres.io.audio import SAMPLE_RATE


def valid_samples(lens: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Absolute number of valid samples per utterance from SpeechBrain relative lengths."""
    return torch.round(lens.float() * num_samples).long().clamp(1, num_samples)


class SentenceNorm(torch.nn.Module):
    """Mean/variance normalisation per coefficient over each utterance's valid frames.

    forward(feats [B, frames, C], valid [B, frames] bool) -> normalised feats, 0 where invalid.
    """

    def __init__(self, eps: float = 1e-10):
        super().__init__()
        self.eps = eps

    def forward(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        mask = valid[:, :, None].to(feats.dtype)
        n = mask.sum(1, keepdim=True).clamp(min=1)
        mean = (feats * mask).sum(1, keepdim=True) / n
        var = ((feats - mean) * mask).square().sum(1, keepdim=True) / n
        return (feats - mean) / var.clamp(min=self.eps).sqrt() * mask


class MfccFrontend(torch.nn.Module):
    """MFCCs + SpecAugment (train mode) + per-utterance normalisation.

    forward(wavs [B, T] at 16 kHz, lens [B] relative lengths in (0, 1])
    -> feats [B, frames, n_mfcc].
    Frames past an utterance's end are set to 0; ``frame_lens`` gives the exact relative
    frame lengths to hand to the network.
    """

    def __init__(
        self,
        n_mfcc: int = 80,
        n_mels: int = 128,
        win_length_ms: float = 25,
        hop_length_ms: float = 12.5,
        spec_augment: bool = True,
        sample_rate: int = SAMPLE_RATE,
        top_db: float = 80.0,
        time_masks: tuple[int, int] = (5, 10),
        time_mask_max_frames: int = 10,
        freq_masks: tuple[int, int] = (1, 3),
        freq_mask_max_bins: int = 4,
    ):
        super().__init__()
        for name, value in (
            ("n_mfcc", n_mfcc), ("n_mels", n_mels), ("win_length_ms", win_length_ms),
            ("hop_length_ms", hop_length_ms), ("sample_rate", sample_rate),
        ):
            if not value > 0:
                raise ValueError(f"MfccFrontend: {name} must be positive, got {value!r}")
        if n_mfcc > n_mels:
            raise ValueError(f"MfccFrontend: n_mfcc ({n_mfcc}) must not exceed n_mels ({n_mels})")
        self.n_mfcc = n_mfcc
        self.stft = STFT(
            sample_rate=sample_rate,
            win_length=win_length_ms,
            hop_length=hop_length_ms,
            window_fn=torch.hann_window,
            center=True,
            pad_mode="constant",
        )
        self.hop = self.stft.hop_length
        self.filterbank = Filterbank(
            n_mels=n_mels,
            sample_rate=sample_rate,
            n_fft=self.stft.n_fft,
            log_mel=True,
            power_spectrogram=2,  # spectral_magnitude(power=1) is |X|^2: 10 * log10 -> dB
            top_db=top_db,
        )
        self.dct = DCT(input_size=n_mels, n_out=n_mfcc, ortho_norm=True)
        self.spec_augment = spec_augment
        if spec_augment:
            self.time_drop = SpectrogramDrop(
                drop_length_low=0, drop_length_high=time_mask_max_frames + 1,
                drop_count_low=time_masks[0], drop_count_high=time_masks[1], dim=1,
            )
            self.freq_drop = SpectrogramDrop(
                drop_length_low=0, drop_length_high=freq_mask_max_bins + 1,
                drop_count_low=freq_masks[0], drop_count_high=freq_masks[1], dim=2,
            )
        self.norm = SentenceNorm()

    def num_frames(self, num_samples: torch.Tensor | int):
        """Frames of a (centred, zero-padded) STFT over ``num_samples`` samples."""
        return 1 + num_samples // self.hop

    def frame_lens(self, lens: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Exact relative frame lengths of a batch of ``num_samples`` samples with ``lens``."""
        frames = self.num_frames(valid_samples(lens, num_samples))
        return frames.float() / self.num_frames(num_samples)

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        if wavs.dim() != 2:
            raise ValueError(f"MfccFrontend expects wavs [batch, samples], got {tuple(wavs.shape)}")
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            wavs = wavs.float()
            n_valid = valid_samples(lens, wavs.shape[1]).to(wavs.device)
            # zero everything past each utterance's end, so padding content never matters
            keep = torch.arange(wavs.shape[1], device=wavs.device)[None] < n_valid[:, None]
            wavs = wavs * keep
            feats = self.dct(self.filterbank(spectral_magnitude(self.stft(wavs), power=1)))
            frames = self.num_frames(n_valid)
            valid = torch.arange(feats.shape[1], device=feats.device)[None] < frames[:, None]
            if self.spec_augment and self.training:
                feats = self.freq_drop(self.time_drop(feats))
            return self.norm(feats, valid)
