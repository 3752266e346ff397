"""The synthetic corpus's audio files (16 kHz mono), each written atomically.

Written through lowres.io.atomic like every other file the project prepares: an
interrupted run leaves at most hidden ``.tmp-*`` files beside the final names (which
corpus.generate removes when it redoes that session), never a truncated file under a
final name.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from lowres.io.atomic import atomic_path, atomic_paths
from lowres.io.audio_headers import SAMPLE_RATE


def write_wavs(paths: Sequence[Path], segments: Sequence[np.ndarray]) -> None:
    """16-bit 16 kHz mono wav files, each written atomically."""
    for path, audio in zip(paths, segments, strict=True):
        with atomic_path(path) as tmp:
            sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def write_m4as(paths: Sequence[Path], stream: np.ndarray,
               spans: Sequence[tuple[int, int]]) -> None:
    """Cut `stream` at sample `spans` into AAC m4a files with one ffmpeg call; all of
    them appear under their names when it succeeds, none when it fails."""
    with atomic_paths(paths) as tmps:
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-threads", "1",
               "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"]
        for tmp, (start, stop) in zip(tmps, spans, strict=True):
            cmd += ["-map", "0:a", "-ss", f"{start / SAMPLE_RATE:.7f}",
                    "-t", f"{(stop - start) / SAMPLE_RATE:.7f}",
                    "-c:a", "aac", "-b:a", "48k", "-aac_coder", "fast",
                    "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                    "-f", "ipod", str(tmp)]
        pcm = (np.clip(stream, -1, 1) * 32767).astype("<i2").tobytes()
        subprocess.run(cmd, input=pcm, check=True, capture_output=True)
