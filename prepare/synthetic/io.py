"""Atomic writes for the synthetic corpus: temp file in the same folder, then rename.

An interrupted run leaves at most hidden `.*.part` files, never a truncated
file under its final name.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


def part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path)
    with open(tmp, "w", encoding=encoding, newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_wavs(paths: Sequence[Path], segments: Sequence[np.ndarray]) -> None:
    """16-bit 16 kHz mono wav files, each written atomically."""
    for path, audio in zip(paths, segments, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = part_path(path)
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)


def write_m4as(paths: Sequence[Path], stream: np.ndarray,
               spans: Sequence[tuple[int, int]]) -> None:
    """Cut `stream` at sample `spans` into AAC m4a files with one ffmpeg call."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-threads", "1",
           "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"]
    for path, (start, stop) in zip(paths, spans, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["-map", "0:a", "-ss", f"{start / SAMPLE_RATE:.7f}",
                "-t", f"{(stop - start) / SAMPLE_RATE:.7f}",
                "-c:a", "aac", "-b:a", "48k", "-aac_coder", "fast",
                "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                "-f", "ipod", str(part_path(path))]
    pcm = (np.clip(stream, -1, 1) * 32767).astype("<i2").tobytes()
    subprocess.run(cmd, input=pcm, check=True, capture_output=True)
    for path in paths:
        os.replace(part_path(path), path)
