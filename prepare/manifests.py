"""Stage 5: SpeechBrain-style manifests, trial files and the table-1 statistics.

- ``<subset>/train.csv``, ``<subset>/val.csv``: columns ID,duration,wav,spk_id,session,gender
- ``<subset>/val_trials.txt``: ``label path1 path2`` (official trial format)
- ``<subset>/stats.json``: files, speakers, sessions, hours and per-speaker
  session / file distributions (the study's table 1), plus trial counts (and, written
  by prepare.voxceleb, the subset's rule and where its trials came from)
- ``test/{original,extended,hard}.csv`` + ``*_trials.txt`` from the VoxCeleb1
  trial lists ``veri_test2.txt``, ``list_test_all2.txt``, ``list_test_hard2.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from lowres.io.atomic import atomic_path, write_json
from lowres.io.audio_headers import read_durations
from lowres.io.lists import MANIFEST_COLUMNS, read_trials, test_set_files, write_manifest
from prepare.errors import PrepareError
from prepare.listing import split_ids

TEST_LISTS = {"original": "veri_test2.txt", "extended": "list_test_all2.txt",
              "hard": "list_test_hard2.txt"}


def _distribution(values: pd.Series) -> dict:
    v = values.to_numpy()
    if len(v) == 0:
        return {"min": 0, "max": 0, "mean": 0.0, "median": 0.0}
    return {"min": int(v.min()), "max": int(v.max()), "mean": round(float(v.mean()), 3),
            "median": float(np.median(v))}


def split_stats(df: pd.DataFrame) -> dict:
    """Table-1 figures of one split (train or val)."""
    per_spk = df.groupby("spk_id")
    sessions = df.groupby(["spk_id", "session"]).size()
    return {
        "files": int(len(df)),
        "speakers": int(df.spk_id.nunique()),
        "speakers_by_gender": {g: int(n) for g, n in
                               df.drop_duplicates("spk_id").gender.value_counts().sort_index().items()},
        "sessions": int(len(sessions)),
        "hours": round(float(df.duration.sum()) / 3600, 3),
        "sessions_per_speaker": _distribution(per_spk.session.nunique()),
        "files_per_speaker": _distribution(per_spk.size()),
        "files_per_session": _distribution(sessions),
    }


def subset_stats(train: pd.DataFrame, val: pd.DataFrame, trials: pd.DataFrame) -> dict:
    """stats.json of a subset: train/val figures and the trial counts."""
    return {
        "train": split_stats(train),
        "val": split_stats(val),
        "val_trials": {"trials": int(len(trials)), "target": int((trials.label == 1).sum()),
                       "nontarget": int((trials.label == 0).sum())},
    }


def check_trials_in(trials: pd.DataFrame, val: pd.DataFrame, source: str,
                    subset: str = "this subset") -> None:
    """Every path of ``trials`` (read from ``source``) must be a file of ``val``."""
    paths = pd.concat([trials.path1, trials.path2]).str.removesuffix(".wav")
    missing = paths[~paths.isin(val.ID)]
    if len(missing):
        raise PrepareError(f"{source}: trial names {missing.iloc[0]}.wav, which is not a "
                           f"validation file of {subset} ({len(missing.unique())} such paths)")


def test_manifest(trials: pd.DataFrame, trial_file: Path, vox1_wav: Path,
                  genders: dict[str, str], jobs: int = 1,
                  known: dict[str, float] | None = None) -> pd.DataFrame:
    """Manifest of every VoxCeleb1 file named by ``trials`` (read from ``trial_file``).

    ``known`` caches durations by wav path across test sets (E and H share files).
    """
    names = pd.Series(pd.unique(pd.concat([trials.path1, trials.path2]).to_numpy()))
    wav = (str(vox1_wav.resolve()) + "/") + names
    exists = np.fromiter((os.path.isfile(p) for p in wav), bool, len(wav))
    if not exists.all():
        first = names[~exists].iloc[0]
        line = int(np.flatnonzero((trials.path1 == first) | (trials.path2 == first))[0]) + 1
        raise PrepareError(
            f"{trial_file}, line {line}: trial names {first}, which does not exist under "
            f"{vox1_wav} ({int((~exists).sum())} missing file(s))"
        )
    ids = names.str.removesuffix(".wav")
    df = split_ids(ids)
    df.insert(0, "ID", ids)
    unknown = sorted(set(df.spk_id) - set(genders))
    if unknown:
        raise PrepareError(f"{trial_file}: speaker(s) {', '.join(unknown[:5])} not in vox1 meta")
    df["gender"] = df.spk_id.map(genders)
    df["wav"] = wav
    known = {} if known is None else known
    todo = [p for p in wav if p not in known]
    known.update(zip(todo, read_durations(todo, jobs, desc=f"headers {trial_file.name}"),
                     strict=True))
    df["duration"] = wav.map(known).to_numpy()
    return df[list(MANIFEST_COLUMNS)]


def write_test_set(manifest_folder: Path, name: str, trial_file: Path, vox1_wav: Path,
                   genders: dict[str, str], jobs: int = 1,
                   known: dict[str, float] | None = None) -> None:
    """Test set ``name``'s manifest and trial list (a copy of ``trial_file``) where training
    and evaluation look for them (lowres.io.lists.test_set_files)."""
    trials = read_trials(trial_file)
    csv, trials_copy = test_set_files(manifest_folder, name)
    write_manifest(csv, test_manifest(trials, trial_file, vox1_wav, genders, jobs, known))
    with atomic_path(trials_copy) as tmp:
        shutil.copyfile(trial_file, tmp)


def write_json_stats(path: str | os.PathLike, stats: dict) -> None:
    """Write stats.json atomically."""
    write_json(path, stats)


def read_json_stats(path: str | os.PathLike) -> dict:
    """Read a stats.json."""
    return json.loads(Path(path).read_text())
