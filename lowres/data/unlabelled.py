"""Unlabelled audio for self-supervised pre-training: a manifest or a folder of wavs.

The source is either a manifest CSV (``ID, duration, wav`` at least, as lowres.io.lists
reads; e.g. a prepared VoxCeleb2 subset whose speaker labels are simply not used) or a
folder scanned recursively for ``*.wav`` (e.g. LibriSpeech converted to wav, or the
synthetic corpus's unlabelled speakers), whose IDs are the paths relative to the folder
without ``.wav`` and whose durations come from the wav headers (lowres.io.audio_headers).

A run freezes its list: :func:`run_manifest` writes the listing into the run folder once
(through lowres.io.lists, atomically) and a resumed run reads that file, so its items (and
the sampler's permutations over them) stay those of the first start even if the folder
changed in between.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from lowres.io.audio_headers import read_durations
from lowres.io.lists import MANIFEST_COLUMNS, ListError, read_manifest, write_manifest

logger = logging.getLogger(__name__)


def check_source(source, key: str) -> Path:
    """``source`` as a path that exists (a file or a folder); ListError naming ``key``."""
    if source is None or str(source) == "":
        raise ListError(f"{key} is not set: give a manifest CSV or a folder of .wav files")
    path = Path(source)
    if not path.exists():
        raise ListError(f"{key}: unlabelled audio not found: {path} (a manifest CSV or a "
                        "folder of .wav files)")
    return path


def unlabelled_listing(source: str | os.PathLike, key: str = "train_audio", jobs: int = 1,
                       min_seconds: float = 0.0) -> pd.DataFrame:
    """The files of ``source`` (manifest or folder) as a manifest DataFrame, without the
    files shorter than ``min_seconds`` (logged). ListError names the path when there is no
    such file or folder, no .wav under the folder, or no file long enough."""
    path = check_source(source, key)
    if path.is_dir():
        wavs = sorted(path.rglob("*.wav"))
        if not wavs:
            raise ListError(f"{key}: no .wav files under {path}")
        df = pd.DataFrame({
            "ID": [w.relative_to(path).with_suffix("").as_posix() for w in wavs],
            "duration": read_durations([str(w) for w in wavs], jobs=jobs,
                                       desc=f"{key}: read wav headers"),
            "wav": [str(w.resolve()) for w in wavs],
        })
    else:
        df = read_manifest(path)
    short = df.duration < min_seconds
    if short.all():
        raise ListError(f"{key}: every file of {path} is shorter than min_seconds={min_seconds}")
    if short.any():
        logger.info("%s: leaving out %d of %d files shorter than %s s", key, short.sum(),
                    len(df), min_seconds)
    return df[~short].reset_index(drop=True)


def run_manifest(source: str | os.PathLike, path: str | os.PathLike, key: str = "train_audio",
                 jobs: int = 1, min_seconds: float = 0.0) -> Path:
    """The run's frozen list of ``source`` at ``path``: written once, then reused."""
    path = Path(path)
    if not path.is_file():
        df = unlabelled_listing(source, key, jobs, min_seconds)
        for column in MANIFEST_COLUMNS:  # no speakers, sessions or genders: left empty
            if column not in df.columns:
                df[column] = ""
        write_manifest(path, df)
        logger.info("%s: %d files (%.1f h) from %s, listed in %s", key, len(df),
                    df.duration.sum() / 3600, source, path)
    return path
