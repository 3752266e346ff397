"""The project's sample rate and the reader of audio headers (soundfile, nothing decoded).

Torch-free, so that data preparation (``prepare``) and the library share one reader:
:func:`read_durations` lists the durations of many files in parallel threads (libsndfile
releases the GIL) and raises one :class:`AudioFileError` naming the bad ones, e.g. when a
folder of unlabelled wavs is listed for pre-training or a VoxCeleb tree is prepared.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import soundfile as sf

from lowres.io.progress import progress

__all__ = ["SAMPLE_RATE", "AudioFileError", "audio_num_samples", "read_durations"]

SAMPLE_RATE = 16000  # of every prepared file and of every model's input
CHUNK = 2000  # files per thread task: one progress update each


class AudioFileError(ValueError):
    """Audio files are unreadable, not at SAMPLE_RATE, not mono or empty; names them."""


def audio_num_samples(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> int:
    """Length in samples at ``sample_rate`` from the file header (no decoding)."""
    info = sf.info(os.fspath(path))
    if info.samplerate == sample_rate:
        return int(info.frames)
    return int(round(info.frames * sample_rate / info.samplerate))


def _header_chunk(paths: list[str], mono: bool = True) -> tuple[np.ndarray, list[str]]:
    """Durations of ``paths`` from their headers, plus a message per bad file."""
    out = np.full(len(paths), np.nan)
    bad = []
    for i, p in enumerate(paths):
        try:
            info = sf.info(p)
        except Exception as e:  # libsndfile raises RuntimeError/LibsndfileError
            bad.append(f"{p}: unreadable audio ({str(e).strip() or type(e).__name__})")
            continue
        if info.samplerate != SAMPLE_RATE:
            bad.append(f"{p}: sample rate {info.samplerate} Hz, expected {SAMPLE_RATE}")
        elif mono and info.channels != 1:
            bad.append(f"{p}: {info.channels} channels, expected mono")
        elif info.frames <= 0:
            bad.append(f"{p}: no samples")
        else:
            out[i] = info.frames / info.samplerate
    return out, bad


def read_durations(paths: list[str], jobs: int = 1, desc: str = "read wav headers",
                   mono: bool = True) -> np.ndarray:
    """Durations in seconds of 16 kHz mono audio files (``mono=False``: any channel
    count), read from headers by ``jobs`` threads.

    Raises :class:`AudioFileError` listing (the first few) bad files.
    """
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    durations, bad = [], []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        bar = progress(total=len(paths), desc=desc, unit="file")
        for d, b in pool.map(partial(_header_chunk, mono=mono), chunks):
            durations.append(d)
            bad.extend(b)
            bar.update(len(d))
        bar.close()
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise AudioFileError(f"{len(bad)} bad audio file(s): " + "; ".join(bad[:5]) + more)
    return np.concatenate(durations) if durations else np.zeros(0)
