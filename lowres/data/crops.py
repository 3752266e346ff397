"""Which frames a training draw reads, and how a crop is normalised: pure functions of
``(seed, draw)`` and of the file's statistics, so that the loader (lowres.data.loading),
its device-side augmentation (lowres.data.augment) and a resumed run agree on every crop.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: As lowres.models.wav2vec2.normalise_waveform, so that a whole file normalised here
#: equals the file normalised by the embedder (tests/test_train_data.py checks it).
WAVEFORM_EPS = 1e-7


def crop_offset(seed: int, draw: int, num_frames: int, crop_frames: int) -> int:
    """Start frame of the crop for training draw ``draw`` (uniform, deterministic)."""
    room = num_frames - crop_frames
    if room <= 0:
        return 0
    return int(np.random.default_rng((int(seed), int(draw))).integers(0, room + 1))


def normalise_with(sig: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(sig - mean) / sqrt(std**2 + eps)``: zero mean, unit variance w.r.t. the file's
    own statistics (``mean``, ``std`` of the whole file), whatever part ``sig`` is."""
    return (sig - mean) * normalising_scale(std)


def normalising_scale(std: float) -> float:
    """The factor of :func:`normalise_with` for a file of standard deviation ``std``."""
    return 1.0 / math.sqrt(std * std + WAVEFORM_EPS)
