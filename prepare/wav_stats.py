"""Per-file waveform statistics for wav2vec2's utterance normalisation (docs/study.md,
'wav2vec2 in the published runs').

    python -m prepare.wav_stats MANIFEST.csv [MANIFEST.csv ...] [--jobs N]

The published runs normalised each whole utterance to zero mean and unit variance and
then cropped it. Reading every whole file per training step to do the same would cost
the loader several times its crop reads, so the statistics are computed once: this
stage adds the columns ``wav_mean`` and ``wav_std`` (mean and population standard
deviation, in float64, of the file's float32 samples as soundfile reads them for the
crops) to each manifest, which the training data then apply to its crops
(lowres.data.crops.normalise_with). The x-vector and ECAPA recipes never need them.

Resumable and atomic: files are read in chunks (``--jobs`` threads; libsndfile and
numpy release the GIL) and each finished chunk is stored at once, atomically, in
``.wav_stats/`` beside the manifest (keyed by wav path, size and modification time),
so a killed run keeps its work and a rerun only reads what is missing; the manifest is
rewritten atomically, with the columns, when all its files are done, and the chunk files
are removed. A manifest that has the columns already is left as it is. Concurrent runs
on one folder (SLURM array tasks starting together) wait for each other.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from lowres.io.atomic import atomic_path, folder_lock, remove_stale_temporaries
from lowres.io.lists import STATS_COLUMNS, read_manifest, write_manifest
from lowres.io.progress import progress
from prepare.errors import USER_ERRORS, PrepareError

CACHE = ".wav_stats"
CHUNK = 500
KEY = ["wav", "size", "mtime_ns"]


def file_stats(path: str) -> tuple[float, float]:
    """(mean, population std) of the whole file's float32 samples (first channel)."""
    sig, _ = sf.read(path, dtype="float32", always_2d=True)
    x = sig[:, 0]
    if x.size == 0:
        raise PrepareError(f"{path}: no samples")
    return float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))


def _stat_key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return path, int(st.st_size), int(st.st_mtime_ns)


def _chunk(paths: list[str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        try:
            rows.append((*_stat_key(p), *file_stats(p)))
        except (OSError, RuntimeError, sf.LibsndfileError) as err:
            raise PrepareError(f"cannot read {p} for its statistics: {err}") from err
    return pd.DataFrame(rows, columns=[*KEY, *STATS_COLUMNS])


def _read_cache(folder: Path) -> pd.DataFrame:
    parts = [pd.read_csv(f, dtype={"wav": str}, keep_default_na=False,
                         float_precision="round_trip") for f in sorted(folder.glob("part-*.csv"))]
    if not parts:
        return pd.DataFrame({"wav": pd.Series(dtype=str), "size": pd.Series(dtype="int64"),
                             "mtime_ns": pd.Series(dtype="int64"),
                             **{c: pd.Series(dtype=float) for c in STATS_COLUMNS}})
    return pd.concat(parts, ignore_index=True).drop_duplicates(KEY, keep="last")


def has_stats(df: pd.DataFrame) -> bool:
    """True when every row of a manifest has finite statistics."""
    return all(c in df.columns for c in STATS_COLUMNS) and bool(
        np.isfinite(df[list(STATS_COLUMNS)].to_numpy(dtype=float)).all())


def add_wav_stats(manifest: str | os.PathLike, jobs: int = 1) -> bool:
    """Add ``wav_mean`` / ``wav_std`` to ``manifest`` (see the module doc).

    Returns False when it had them already.  Raises ListError for a malformed manifest
    and PrepareError naming an unreadable audio file or a manifest that cannot be
    rewritten: both are in USER_ERRORS, which every caller reports as is.
    """
    manifest = Path(manifest)
    df = read_manifest(manifest)
    if has_stats(df):
        return False
    cache = manifest.parent / CACHE
    try:
        with folder_lock(manifest.parent, name=".wav_stats.lock"):
            df = read_manifest(manifest)  # another process may have finished it meanwhile
            if has_stats(df):
                return False
            _compute(manifest, df, cache, jobs)
    except PermissionError as err:
        raise PrepareError(f"cannot add {'/'.join(STATS_COLUMNS)} to {manifest} ({err}): run "
                           f"python -m prepare.wav_stats {manifest} as a user who may write "
                           "there") from err
    return True


def _compute(manifest: Path, df: pd.DataFrame, cache: Path, jobs: int) -> None:
    cache.mkdir(exist_ok=True)
    remove_stale_temporaries(cache)
    paths = list(dict.fromkeys(df.wav))
    known = _read_cache(cache)
    keys = pd.DataFrame([_stat_key(p) if os.path.isfile(p) else (p, -1, -1) for p in paths],
                        columns=KEY)
    missing = [p for p, size in zip(keys.wav, keys["size"], strict=True) if size < 0]
    if missing:
        raise PrepareError(f"{manifest}: audio file not found: {missing[0]} "
                           f"({len(missing)} missing)")
    done = keys.merge(known, on=KEY, how="inner")
    todo = sorted(set(paths) - set(done.wav))
    size = max(1, min(CHUNK, math.ceil(len(todo) / max(1, jobs))))  # every thread busy
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    first = len(list(cache.glob("part-*.csv")))
    bar = progress(total=len(paths), initial=len(paths) - len(todo), unit="file",
                   desc=f"wav statistics {manifest.parent.name}/{manifest.name}")
    results = [done]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for i, part in enumerate(pool.map(_chunk, chunks)):
            with atomic_path(cache / f"part-{first + i:06d}.csv") as tmp:
                part.to_csv(tmp, index=False)
            results.append(part)
            bar.update(len(part))
    bar.close()
    stats = pd.concat(results, ignore_index=True).drop_duplicates("wav", keep="last")
    stats = stats.set_index("wav")
    out = df.drop(columns=[c for c in STATS_COLUMNS if c in df.columns])
    for column in STATS_COLUMNS:
        out[column] = out.wav.map(stats[column]).to_numpy(dtype=float)
    write_manifest(manifest, out)
    shutil.rmtree(cache, ignore_errors=True)


def add_wav_stats_all(manifests: Sequence[str | os.PathLike], jobs: int = 1) -> list[Path]:
    """:func:`add_wav_stats` for several manifests; returns those that gained the columns."""
    return [Path(m) for m in manifests if add_wav_stats(m, jobs)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m prepare.wav_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", help="manifest CSVs (e.g. M/full/train.csv)")
    p.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0))
                   if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                   help="parallel readers (default: the CPUs this process may use)")
    args = p.parse_args(argv)
    try:
        changed = add_wav_stats_all(args.manifests, args.jobs)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for m in args.manifests:
        print(f"{m}: {'statistics added' if Path(m) in changed else 'had them already'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
