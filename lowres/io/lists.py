"""The manifest CSVs and trial lists: the one reader and writer of each format.

Data preparation writes them, training validates on them and evaluation scores them;
all three go through here, so a bad file fails the same way everywhere:
:class:`ListError` with a message naming the file (and the line, for a trial list).

- Manifest: CSV with a header, one row per file: ``ID, duration, wav, spk_id, session,
  gender`` (SpeechBrain's layout; ``ID`` is ``speaker/session/utterance``), optionally
  followed by ``wav_mean, wav_std``: the whole file's waveform mean and standard
  deviation (prepare.wav_stats), which only wav2vec2's utterance normalisation reads.
- Trial list: one trial per line, ``label path1 path2``, label 1 = same speaker; the
  paths are relative to the audio root (``id10270/x6uYqmx31kE/00001.wav``) and a
  trial's ids are the paths without ``.wav``, which is how manifests name files.
- A prepared manifest folder holds VoxCeleb1's test sets (:data:`TEST_SETS`) as
  ``test/<name>.csv`` and ``test/<name>_trials.txt`` (:func:`test_set_files`), which
  prepare.voxceleb writes and training and evaluation read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lowres.io.atomic import atomic_path
from lowres.io.hparams import name_list

MANIFEST_COLUMNS = ("ID", "duration", "wav", "spk_id", "session", "gender")
STATS_COLUMNS = ("wav_mean", "wav_std")  # optional, kept by write_manifest when present
TRIAL_COLUMNS = ("label", "path1", "path2")
#: VoxCeleb1's trial lists (O, E, H) by their names in a manifest folder's ``test/``
TEST_SETS = ("original", "extended", "hard")
TEST_SET_LABELS = {"original": "VoxCeleb1-O", "extended": "VoxCeleb1-E", "hard": "VoxCeleb1-H"}


class ListError(ValueError):
    """A manifest or trial list is missing or malformed; the message names the file."""


def read_manifest(path: str | os.PathLike,
                  required: tuple[str, ...] = ("ID", "duration", "wav")) -> pd.DataFrame:
    """A manifest CSV (ids, paths and speakers as strings, ``duration`` in seconds)."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"manifest not found: {path} (run python -m prepare.voxceleb)")
    text_columns = {c: str for c in MANIFEST_COLUMNS if c != "duration"}
    try:
        df = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ListError(f"manifest {path} is not a readable CSV: {err}") from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ListError(f"manifest {path} lacks columns {missing}")
    if df.empty:
        raise ListError(f"manifest {path} has no rows")
    if "duration" in df.columns:
        try:
            df["duration"] = df.duration.astype(float)
        except ValueError as err:
            raise ListError(f"manifest {path}: a duration is not a number ({err})") from err
    return df


def manifest_items(df: pd.DataFrame) -> dict[str, dict]:
    """``{ID: {column: value}}`` of a manifest, the form SpeechBrain's datasets take."""
    duplicated = df.ID[df.ID.duplicated()]
    if len(duplicated):
        raise ListError(f"manifest names {duplicated.iloc[0]!r} more than once "
                        f"({duplicated.nunique()} duplicated IDs)")
    return df.set_index("ID").to_dict(orient="index")


def write_manifest(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a manifest CSV (rows sorted by ID) atomically, with the statistics columns
    when ``df`` has them."""
    columns = [*MANIFEST_COLUMNS, *(c for c in STATS_COLUMNS if c in df.columns)]
    with atomic_path(path) as tmp:
        df.sort_values("ID")[columns].to_csv(tmp, index=False)


def trial_id(path: str) -> str:
    """The manifest ID of a trial-list path (the path without ``.wav``)."""
    return path[:-4] if path.endswith(".wav") else path


def read_trials(path: str | os.PathLike) -> pd.DataFrame:
    """A trial list as columns ``label`` (int), ``path1``, ``path2``, ``id1``, ``id2``."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"trial list not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 3 or cells[0] not in ("0", "1"):
                raise ListError(f"malformed trial list {path}, line {n}: {line.strip()!r} "
                                "(expected 'label path1 path2' with label 0 or 1)")
            rows.append(cells)
    if not rows:
        raise ListError(f"trial list is empty: {path}")
    df = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    df["label"] = df.label.astype(int)
    df["id1"] = [trial_id(p) for p in df.path1]
    df["id2"] = [trial_id(p) for p in df.path2]
    return df


def write_trials(path: str | os.PathLike, trials: pd.DataFrame) -> None:
    """Write ``label path1 path2`` lines atomically."""
    with atomic_path(path) as tmp:
        trials[list(TRIAL_COLUMNS)].to_csv(tmp, sep=" ", header=False, index=False)


def test_set_files(manifest_folder: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Manifest CSV and trial list of test set ``name`` in a prepared manifest folder
    (``test/<name>.csv``, ``test/<name>_trials.txt``)."""
    folder = Path(manifest_folder) / "test"
    return folder / f"{name}.csv", folder / f"{name}_trials.txt"


def test_set_names(value) -> list[str]:
    """A ``test_sets`` hparam as typed (``original``, ``original,hard``, ``[original, hard]``)
    -> names of :data:`TEST_SETS`."""
    return name_list(value, "test_sets", TEST_SETS)
