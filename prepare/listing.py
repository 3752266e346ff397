"""Stage 2: the listing of every VoxCeleb2 dev utterance, made once and cached.

One row per file: ``ID`` (``spk/session/utt``), ``spk_id``, ``session``, ``utt``,
``duration`` (seconds, from the wav header: no file is decoded), ``gender``
and ``wav`` (absolute path).  Headers are read in parallel threads
(lowres.io.audio_headers).  A file that is unreadable, not mono or not 16 kHz stops
the stage with an ``AudioFileError`` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lowres.io.atomic import atomic_path, read_json, write_json
from lowres.io.audio_headers import read_durations
from prepare.convert import find_audio
from prepare.errors import PrepareError

COLUMNS = ["ID", "spk_id", "session", "utt", "duration", "gender", "wav"]


def split_ids(ids: pd.Series) -> pd.DataFrame:
    """``spk/session/utt`` keys -> columns spk_id, session, utt."""
    parts = ids.str.split("/", n=2, expand=True)
    return pd.DataFrame({"spk_id": parts[0], "session": parts[1], "utt": parts[2]})


def build_listing(wav_root: str | os.PathLike, genders: dict[str, str],
                  jobs: int = 1) -> pd.DataFrame:
    """Listing of every ``wav_root/<spk>/<session>/<utt>.wav`` (see module doc)."""
    wav_root = Path(wav_root).resolve()
    if not wav_root.is_dir():
        raise PrepareError(f"no VoxCeleb2 wav folder: {wav_root}")
    paths = [str(p) for p in find_audio(wav_root, "wav")]
    if not paths:
        raise PrepareError(f"no wav files found under {wav_root} (expected <spk>/<session>/*.wav)")
    wav = pd.Series(paths, dtype=object)
    ids = wav.str.slice(len(str(wav_root)) + 1, -4)
    df = split_ids(ids)
    df.insert(0, "ID", ids)
    missing = sorted(set(df.spk_id) - set(genders))
    if missing:
        raise PrepareError(
            f"{len(missing)} speaker(s) under {wav_root} are not in the vox2 meta file, "
            f"e.g. {', '.join(missing[:5])}"
        )
    df["duration"] = read_durations(paths, jobs)
    df["gender"] = df.spk_id.map(genders)
    df["wav"] = wav
    return df[COLUMNS]


def load_or_build_listing(cache: str | os.PathLike, wav_root: str | os.PathLike,
                          genders: dict[str, str], jobs: int = 1) -> pd.DataFrame:
    """The cached listing at ``cache`` (csv), built first when missing or made elsewhere."""
    cache = Path(cache)
    sidecar = cache.with_suffix(".json")
    key = {"wav_root": str(Path(wav_root).resolve())}
    if cache.exists() and read_json(sidecar) == key:
        df = pd.read_csv(cache, dtype={c: str for c in COLUMNS if c != "duration"},
                         keep_default_na=False, float_precision="round_trip")
        df["gender"] = df.spk_id.map(genders).fillna(df.gender)
        return df
    df = build_listing(wav_root, genders, jobs)
    with atomic_path(cache) as tmp:
        df.to_csv(tmp, index=False)
    write_json(sidecar, key)
    return df
