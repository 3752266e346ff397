"""The one reader of audio files (soundfile): the whole utterance that evaluation and
the SpeakerVerifier embed, and the crop that training reads.

- :func:`load_audio` / :func:`read_audio`: a whole file as float32 mono at 16 kHz
  (multi-channel averaged, another rate resampled with torchaudio); a missing, unreadable
  or empty file raises ``FileNotFoundError`` / ``RuntimeError`` naming it.
- :func:`read_segment`: frames ``[start, start + frames)`` only (soundfile start/stop: only
  the crop is decoded), its first channel; the training crops of the prepared 16 kHz mono
  corpus and the augmentation collections' impulse responses, whose channels are separate
  microphones (averaging them would blur the response).
- :func:`audio_num_samples` and ``SAMPLE_RATE``: from lowres.io.audio_headers, the
  torch-free header reader that data preparation shares.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch

from lowres.io.audio_headers import SAMPLE_RATE, audio_num_samples

__all__ = ["SAMPLE_RATE", "load_audio", "read_audio", "read_segment", "audio_num_samples"]


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file as a float32 mono tensor ``[T]`` at ``sample_rate``.

    Multi-channel audio is averaged; other sample rates are resampled with
    ``torchaudio.functional.resample``.  Missing or unreadable files raise
    ``FileNotFoundError`` / ``RuntimeError`` naming the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    return read_audio(path, sample_rate, name=path)


def read_audio(source, sample_rate: int = SAMPLE_RATE, name: str | None = None) -> torch.Tensor:
    """:func:`load_audio`'s decoding of a path or an open file (e.g. a wav inside a shard,
    lowres.data.shards); errors name ``name``."""
    name = name or os.fspath(source)
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise RuntimeError(f"cannot read audio file {name}: {err}") from err
    wav = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    if wav.numel() == 0:
        raise RuntimeError(f"audio file is empty: {name}")
    if sr != sample_rate:
        import torchaudio.functional as taf

        wav = taf.resample(wav, sr, sample_rate)
    return wav.contiguous()


def read_segment(path, start: int, frames: int) -> torch.Tensor:
    """Frames ``[start, start + frames)`` of a file (a path or an open file) as float32,
    its first channel (shorter at the end)."""
    sig, _ = sf.read(path, start=start, stop=start + frames, dtype="float32", always_2d=False)
    if sig.ndim > 1:  # keep the first channel of an unexpected multi-channel file
        sig = sig[:, 0]
    return torch.from_numpy(np.ascontiguousarray(sig))
