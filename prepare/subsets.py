"""Stage 3b: the training subsets (docs/study.md, 'The three subsets'), one function per rule.

All rules take the *train* split (a listing with columns ID, spk_id, session,
gender, ...) and return the selected rows.  Budgets along the three axes are
arguments: speakers (``speakers_per_gender``), sessions per speaker
(``max_sessions_per_speaker``) and files per session/speaker
(``max_files_per_session``, ``files_per_speaker``).

- full:            every train file.
- tiny_few:        the N male + N female speakers with the most train files; all their files.
- tiny_many_low:   every speaker, K files, at most 8 per session visit.
- tiny_many_high:  every speaker, K files, at most 1 per session visit.
  Sessions are visited from most to fewest files (ties by session id); when a
  speaker runs out of sessions short of K files, another pass is made in the
  same order with the same cap, skipping files already taken.  Files within a
  session are taken in a seeded random order.

Validation of a subset = the validation split restricted to its speakers.

A published list (``utterance_key;shard_dix;set_name``) gives a subset exactly
(:func:`select_from_list`); the study's full split is the rest of the data around the
validation keys of its tiny_many lists (:func:`select_full_from_lists`).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lowres.io.atomic import atomic_path
from prepare.errors import PrepareError, PrepareWarning
from prepare.seeding import file_keys

SUBSETS = ("full", "tiny_few", "tiny_many_low", "tiny_many_high")
LIST_SUFFIX = "_utterance_list"
BUDGET_KEYS = ("speakers_per_gender", "max_sessions_per_speaker", "max_files_per_session",
               "files_per_speaker")


def select_full(train: pd.DataFrame) -> pd.DataFrame:
    """full: every file of the train split."""
    return train


def speakers_with_most_files(train: pd.DataFrame, per_gender: int) -> pd.Index:
    """The ``per_gender`` male and ``per_gender`` female speakers with the most files.

    Ties are broken by speaker id.  A gender with fewer speakers gives all it has.
    """
    counts = train.groupby(["gender", "spk_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["gender", "n", "spk_id"], ascending=[True, False, True])
    top = counts.groupby("gender", sort=False).head(per_gender)
    short = {g: int(n) for g, n in top.groupby("gender").size().items() if n < per_gender}
    if short:
        warnings.warn(f"only {short} speakers available for {per_gender} per gender",
                      PrepareWarning, stacklevel=2)
    return pd.Index(top.spk_id)


def select_tiny_few(train: pd.DataFrame, speakers_per_gender: int = 50) -> pd.DataFrame:
    """tiny_few: the speakers_per_gender m + f speakers with most train files, all their files."""
    keep = speakers_with_most_files(train, speakers_per_gender)
    return train[train.spk_id.isin(keep)]


def session_order(train: pd.DataFrame) -> pd.Series:
    """Per file: rank of its session within its speaker, most files first (ties by id)."""
    sizes = train.groupby(["spk_id", "session"]).size().rename("n").reset_index()
    sizes = sizes.sort_values(["spk_id", "n", "session"], ascending=[True, False, True])
    sizes["rank"] = sizes.groupby("spk_id").cumcount()
    rank = pd.Series(sizes["rank"].to_numpy(), index=pd.MultiIndex.from_frame(
        sizes[["spk_id", "session"]]))
    idx = pd.MultiIndex.from_arrays([train.spk_id, train.session])
    return pd.Series(rank.reindex(idx).to_numpy(), index=train.index)


def select_files_per_speaker(train: pd.DataFrame, files_per_speaker: int,
                             max_files_per_session: int | None, seed: int) -> pd.DataFrame:
    """K files per speaker, at most ``max_files_per_session`` per session visit.

    Visit order: sessions from most to fewest files, repeated in passes until K
    files are taken or the speaker has none left; files within a session in a
    seeded random order.  (The rule of tiny_many_low / tiny_many_high.)
    """
    cap = max_files_per_session or np.iinfo(np.int64).max
    df = pd.DataFrame({
        "spk_id": train.spk_id.to_numpy(),
        "ses_rank": session_order(train).to_numpy(),
        "key": file_keys(train.ID, seed, "files_within_session"),
        "pos": np.arange(len(train)),
    })
    df = df.sort_values(["spk_id", "ses_rank", "key"])
    within = df.groupby(["spk_id", "ses_rank"], sort=False).cumcount().to_numpy()
    df["pass"], df["slot"] = within // cap, within % cap
    df = df.sort_values(["spk_id", "pass", "ses_rank", "slot"])
    picked = df.groupby("spk_id", sort=False).head(files_per_speaker)
    n = picked.groupby("spk_id").size()
    if (n < files_per_speaker).any():
        warnings.warn(f"{int((n < files_per_speaker).sum())} speaker(s) have fewer than "
                      f"{files_per_speaker} train files; they keep all they have",
                      PrepareWarning, stacklevel=2)
    return train.iloc[np.sort(picked.pos.to_numpy())]


def select_tiny_many(train: pd.DataFrame, files_per_speaker: int = 8,
                     max_files_per_session: int = 8, seed: int = 1337) -> pd.DataFrame:
    """tiny_many_low (cap 8) / tiny_many_high (cap 1): every speaker, K files (see above)."""
    return select_files_per_speaker(train, files_per_speaker, max_files_per_session, seed)


def select_sessions_per_speaker(train: pd.DataFrame, max_sessions: int) -> pd.DataFrame:
    """Keep each speaker's ``max_sessions`` sessions with the most files (ties by id)."""
    return train[session_order(train) < max_sessions]


def select_files_per_session(train: pd.DataFrame, max_files: int, seed: int) -> pd.DataFrame:
    """At most ``max_files`` files of each session, picked at random (seeded)."""
    order = pd.DataFrame({"s": (train.spk_id + "/" + train.session).to_numpy(),
                          "k": file_keys(train.ID, seed, "files_within_session"),
                          "pos": np.arange(len(train))}).sort_values(["s", "k"])
    keep = order.pos[order.groupby("s", sort=False).cumcount() < max_files]
    return train.iloc[np.sort(keep.to_numpy())]


def select_budget(train: pd.DataFrame, seed: int = 1337, speakers_per_gender: int | None = None,
                  max_sessions_per_speaker: int | None = None,
                  max_files_per_session: int | None = None,
                  files_per_speaker: int | None = None) -> pd.DataFrame:
    """A subset designed along the three axes; None leaves an axis unrestricted.

    tiny_few = (speakers_per_gender=50); tiny_many_low = (files_per_speaker=8,
    max_files_per_session=8); tiny_many_high = (files_per_speaker=8, max_files_per_session=1).
    """
    out = train
    if speakers_per_gender is not None:
        out = select_tiny_few(out, speakers_per_gender)
    if max_sessions_per_speaker is not None:
        out = select_sessions_per_speaker(out, max_sessions_per_speaker)
    if files_per_speaker is not None:
        out = select_files_per_speaker(out, files_per_speaker, max_files_per_session, seed)
    elif max_files_per_session is not None:
        out = select_files_per_session(out, max_files_per_session, seed)
    return out


def parse_budget(spec: str) -> tuple[str, dict[str, int]]:
    """``NAME:key=value,...`` (keys from BUDGET_KEYS) -> (NAME, budget dict)."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+):(.*)", spec.strip())
    if not m:
        raise PrepareError(f"bad subset spec {spec!r}: expected NAME:key=value,...")
    budget = {}
    for item in filter(None, m.group(2).split(",")):
        k, _, v = item.partition("=")
        if k.strip() not in BUDGET_KEYS or not v.strip().isdigit() or int(v) < 1:
            raise PrepareError(f"bad subset spec {spec!r}: {item!r} "
                               f"(keys: {', '.join(BUDGET_KEYS)}; values positive integers)")
        budget[k.strip()] = int(v)
    return m.group(1), budget


def subset_val(val: pd.DataFrame, subset_train: pd.DataFrame) -> pd.DataFrame:
    """Validation of a subset: the validation split restricted to the subset's speakers."""
    return val[val.spk_id.isin(subset_train.spk_id.unique())]


def check_not_empty(name: str, train: pd.DataFrame, val: pd.DataFrame) -> None:
    """Raise PrepareError when a subset has no train or no validation files."""
    if len(train) == 0:
        raise PrepareError(f"subset {name!r} is empty: no train files selected")
    if len(val) == 0:
        raise PrepareError(f"subset {name!r} has no validation files "
                           f"(speakers: {train.spk_id.nunique()})")


def list_name(path: str | os.PathLike) -> str:
    """Subset name of a published list: tiny_few_utterance_list.csv -> tiny_few."""
    stem = Path(path).stem
    return stem[: -len(LIST_SUFFIX)] if stem.endswith(LIST_SUFFIX) else stem


def read_subset_list(path: str | os.PathLike) -> pd.DataFrame:
    """A published list ``utterance_key;shard_dix;set_name`` -> columns ID, set_name."""
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"subset list not found: {path}")
    try:
        df = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False,
                         encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PrepareError(f"malformed subset list {path}: {e}") from e
    df.columns = [c.strip() for c in df.columns]
    if not {"utterance_key", "set_name"} <= set(df.columns):
        raise PrepareError(f"malformed subset list {path}: header must contain "
                           f"utterance_key;shard_dix;set_name, got {';'.join(df.columns)}")
    df = pd.DataFrame({"ID": df.utterance_key.str.strip().str.removesuffix(".wav"),
                       "set_name": df.set_name.str.strip()})
    bad = df[~df.set_name.isin(["train", "val"])]
    if len(bad):
        raise PrepareError(f"malformed subset list {path}, line {bad.index[0] + 2}: "
                           f"set_name {bad.set_name.iloc[0]!r} is not train/val")
    dup = df.ID[df.ID.duplicated()]
    if len(dup):
        raise PrepareError(f"malformed subset list {path}: key {dup.iloc[0]} listed twice")
    if len(df) == 0:
        raise PrepareError(f"subset list {path} names no utterances")
    return df


def _check_in_data(listing: pd.DataFrame, ids: pd.Series, path: str | os.PathLike) -> None:
    """PrepareError naming the count and a few of ``ids`` (keys of ``path``) not in the data."""
    missing = ids[~ids.isin(listing.ID)]
    if len(missing):
        raise PrepareError(
            f"{len(missing)} of {len(ids)} keys in {path} are not in the data, e.g. "
            + ", ".join(missing.iloc[:5])
        )


def select_from_list(listing: pd.DataFrame, path: str | os.PathLike
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exactly the train and val files a published list names (rows of ``listing``)."""
    wanted = read_subset_list(path)
    _check_in_data(listing, wanted.ID, path)
    rows = listing[listing.ID.isin(wanted.ID)]
    is_train = rows.ID.isin(wanted.ID[wanted.set_name == "train"])
    return rows[is_train], rows[~is_train]


def select_full_from_lists(listing: pd.DataFrame, paths: list[str | os.PathLike]
                           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """full from published lists: val = their val keys (the same in each), train = the rest.

    The study published no list of its full split; the val rows of its tiny_many lists
    are its full validation split, and every other file was in its full train split.
    """
    keys = None
    for path in paths:
        df = read_subset_list(path)
        val = np.sort(df.ID[df.set_name == "val"].to_numpy())
        if keys is None:
            keys, first = val, path
        elif not np.array_equal(val, keys):
            raise PrepareError(f"the validation keys of {path} differ from those of {first}: "
                               "they are not the study's full validation split")
    _check_in_data(listing, pd.Series(keys), first)
    is_val = listing.ID.isin(keys)
    return listing[~is_val], listing[is_val]


def write_subset_list(path: str | os.PathLike, train: pd.DataFrame, val: pd.DataFrame,
                      shard_size: int = 5000) -> None:
    """Write ``train``/``val`` in the published list format (shard_dix = row // shard_size)."""
    parts = []
    for name, df in (("train", train), ("val", val)):
        parts.append(pd.DataFrame({"utterance_key": df.ID.to_numpy(),
                                   "shard_dix": np.arange(len(df)) // shard_size,
                                   "set_name": name}))
    with atomic_path(path) as tmp:
        pd.concat(parts).to_csv(tmp, sep=";", index=False)
