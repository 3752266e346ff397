"""Stage 2: the listing of every VoxCeleb2 dev utterance, made once and cached.

One row per file: ``ID`` (``spk/session/utt``), ``spk_id``, ``session``, ``utt``,
``duration`` (seconds, from the wav header: no file is decoded), ``gender``
and ``wav`` (absolute path).  Headers are read in parallel threads
(libsndfile releases the GIL).  A file that is unreadable, not mono or not
16 kHz stops the stage with a :class:`PrepareError` naming it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from lowres.io.atomic import atomic_path, read_json, write_json
from prepare.convert import SAMPLE_RATE, find_audio
from prepare.errors import PrepareError
from prepare.progress import progress

COLUMNS = ["ID", "spk_id", "session", "utt", "duration", "gender", "wav"]
CHUNK = 2000


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
    """Durations in seconds of 16 kHz mono wavs (``mono=False``: any channel count), read
    from headers in parallel.

    Raises :class:`PrepareError` listing (the first few) bad files.
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
        raise PrepareError(
            f"{len(bad)} bad audio file(s): " + "; ".join(bad[:5]) + more
        )
    return np.concatenate(durations) if durations else np.zeros(0)


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
