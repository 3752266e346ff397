"""WebDataset shards of prepared manifests, as the study trained from (docs/study.md,
'Data in the published runs').

    python -m prepare.shards --manifest_folder M --out S [--subsets tiny_few ...]
        [--test_sets original extended hard] [--shard_size 5000] [--seed 1337]

Writes each subset's ``train.csv`` and ``val.csv`` to ``S/<subset>/{train,val}/`` and the
union of the test manifests ``M/test/<name>.csv`` to ``S/test/``, as tar shards of
``--shard_size`` utterances (the last one of a split holds the rest); the layout and the
reader are in :mod:`lowres.data.shards`.  Train with ``--data_format shards
--shard_folder S``.

Speakers are interleaved at random, as the study's shard writer did: a shard is filled in
rounds, each round taking one random not-yet-used utterance of every speaker that has one
left, in a random order, and every shard starts a new round; seeded (``--seed``), so the
shards are a pure function of the manifest, the seed and the shard size.  A sample is
``<ID>.wav`` (the file's bytes, unchanged) and ``<ID>.json`` (its manifest row).

Atomic and resumable like the other stages: each shard, then its member table
(``<name>.idx.json``: byte offset and size of each wav, the shard's size and sha256) is
written under a temporary name and renamed into place, and a split's ``index.json`` (its
parameters, sample count and shards) is written last, so it marks the split as done.  A
rerun skips done splits, keeps the finished shards of an interrupted one, and redoes a
split whose manifest content, seed or shard size changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import webdataset

from lowres.data.shards import (
    FORMAT,
    INDEX_FILE,
    TEST_FOLDER,
    shard_name,
    split_folder,
    table_name,
)
from lowres.io.atomic import (
    atomic_path,
    folder_lock,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from lowres.io.lists import read_manifest
from lowres.io.progress import progress
from prepare.errors import USER_ERRORS, PrepareError
from prepare.manifests import TEST_LISTS

log = logging.getLogger("prepare.shards")

SHARD_SIZE = 5000  # the study's shards
SEED = 1337  # prepare.voxceleb's default seed
SPLITS = ("train", "val")
FINGERPRINT_COLUMNS = ("ID", "wav", "spk_id", "duration")


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of what the shards hold (IDs, paths, speakers, durations); other
    manifest columns (e.g. the statistics of prepare.wav_stats) do not matter."""
    h = pd.util.hash_pandas_object(df[list(FINGERPRINT_COLUMNS)], index=False).to_numpy()
    return f"{len(df)}:{int(h.sum(dtype='uint64'))}"


def shard_plan(speakers: Sequence[str], shard_size: int, seed: int) -> list[np.ndarray]:
    """Rows (positions in ``speakers``) of each shard: speakers interleaved at random (see
    the module doc)."""
    rng = np.random.default_rng((int(seed), zlib.crc32(b"prepare.shards")))
    speakers = np.asarray(speakers, dtype=object)
    names, speaker, counts = np.unique(speakers, return_inverse=True, return_counts=True)
    by_speaker = np.split(np.argsort(speaker, kind="stable"), np.cumsum(counts)[:-1])
    left = [list(rng.permutation(rows)) for rows in by_speaker]
    shards, shard, turn, remaining = [], [], [], len(speakers)
    while remaining:
        if len(shard) == shard_size:
            shards.append(np.array(shard))
            shard, turn = [], []
        if not turn:  # a new round: every speaker with files left, in a random order
            live = [k for k in range(len(names)) if left[k]]
            turn = [live[i] for i in rng.permutation(len(live))]
        shard.append(left[turn.pop()].pop())
        remaining -= 1
    shards.append(np.array(shard))
    return shards


def _check_key(key: str) -> None:
    # WebDataset splits a member name into key and extension at the first dot of its
    # last path component
    if not key or "." in key.rsplit("/", 1)[-1] or key.startswith("/"):
        raise PrepareError(f"utterance ID {key!r} cannot be a WebDataset key (no '.' in its "
                           "last part, not absolute)")


def write_shard(path: Path, rows: pd.DataFrame, bar) -> dict:
    """Write one shard and return its member table (see the module doc)."""
    for key in rows.ID:
        _check_key(key)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f, webdataset.TarWriter(f, encoder=False, mtime=0) as sink:
            for row in rows.to_dict(orient="records"):
                try:
                    wav = Path(row["wav"]).read_bytes()
                except OSError as err:
                    raise PrepareError(f"cannot read {row['wav']} (ID {row['ID']}): {err}") \
                        from err
                meta = json.dumps(row, sort_keys=True, default=str).encode()
                try:
                    sink.write({"__key__": row["ID"], "wav": wav, "json": meta})
                except ValueError as err:  # e.g. a name too long for a ustar header
                    raise PrepareError(f"cannot store ID {row['ID']!r} in a tar: {err}") \
                        from err
                bar.update(1)
        where = {}
        with tarfile.open(tmp) as tar:
            for member in tar:
                if member.name.endswith(".wav"):
                    where[member.name[:-4]] = (member.offset_data, member.size)
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        size = tmp.stat().st_size
    return {"shard": path.name, "bytes": size, "sha256": digest.hexdigest(),
            "keys": rows.ID.tolist(), "wav": rows.wav.tolist(),
            "offset": [where[k][0] for k in rows.ID], "size": [where[k][1] for k in rows.ID]}


def _entry(table: dict) -> dict:
    return {"name": table["shard"], "table": table_name(table["shard"]),
            "samples": len(table["keys"]), "bytes": table["bytes"], "sha256": table["sha256"]}


def write_split(df: pd.DataFrame, folder: Path, split: str, shard_size: int, seed: int,
                source: str) -> dict:
    """Shards and index of one split (skipped when done; see the module doc)."""
    params = {"fingerprint": fingerprint(df), "shard_size": int(shard_size), "seed": int(seed)}
    index = read_json(folder / INDEX_FILE)
    if isinstance(index, dict) and index.get("format") == FORMAT and index["params"] == params:
        log.info("%s: done already (%d shards)", folder, len(index["shards"]))
        return index
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX_FILE).unlink(missing_ok=True)
    remove_stale_temporaries(folder)
    df = df.reset_index(drop=True)
    plan = shard_plan(df.spk_id.tolist(), shard_size, seed)
    entries = []
    with progress(total=len(df), desc=f"shards {folder}", unit="file") as bar:
        for number, rows in enumerate(plan):
            name = shard_name(split, number)
            part = df.iloc[rows]
            table = read_json(folder / table_name(name))
            done = (isinstance(table, dict) and table.get("keys") == part.ID.tolist()
                    and table.get("wav") == part.wav.tolist()
                    and (folder / name).is_file()
                    and (folder / name).stat().st_size == table.get("bytes"))
            if not done:
                (folder / table_name(name)).unlink(missing_ok=True)
                table = write_shard(folder / name, part, bar)
                write_json(folder / table_name(name), table)
            else:
                bar.update(len(part))
            entries.append(_entry(table))
    names = {e["name"] for e in entries} | {e["table"] for e in entries}
    for old in folder.glob(f"{split}-*"):  # shards of an earlier, longer plan
        if old.name not in names:
            old.unlink()
    index = {"format": FORMAT, "params": params, "source": source, "split": split,
             "samples": len(df), "speakers": int(df.spk_id.nunique()), "shards": entries}
    write_json(folder / INDEX_FILE, index)
    log.info("%s: %d files of %d speakers in %d shards (%.1f MB)", folder, len(df),
             index["speakers"], len(entries), sum(e["bytes"] for e in entries) / 1e6)
    return index


def subset_names(manifest_folder: Path, subsets) -> list[str]:
    """The subsets to write: ``subsets``, or every folder of M with a train.csv."""
    if subsets is None:
        return sorted(p.parent.name for p in manifest_folder.glob("*/train.csv"))
    for name in subsets:
        if not (manifest_folder / name / "train.csv").is_file():
            raise PrepareError(f"subset {name!r} has no manifests in {manifest_folder} "
                               f"({manifest_folder / name / 'train.csv'} is missing)")
    return list(subsets)


def test_union(manifest_folder: Path, test_sets) -> tuple[pd.DataFrame | None, list[str]]:
    """The files of the requested (default: every prepared) test manifests, once each."""
    folder = manifest_folder / TEST_FOLDER
    names = [n for n in TEST_LISTS if (folder / f"{n}.csv").is_file()] if test_sets is None \
        else list(test_sets)
    frames = []
    for name in names:
        if name not in TEST_LISTS:
            raise PrepareError(f"unknown test set {name!r} (choose from {', '.join(TEST_LISTS)})")
        frames.append(read_manifest(folder / f"{name}.csv",
                                    required=("ID", "duration", "wav", "spk_id")))
    if not frames:
        return None, []
    return pd.concat(frames).drop_duplicates("ID").sort_values("ID"), names


def write_shards(manifest_folder, out, subsets=None, test_sets=None,
                 shard_size: int = SHARD_SIZE, seed: int = SEED) -> dict[str, dict]:
    """Every split's shards (see the module doc); returns {split folder: its index}."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise PrepareError(f"--shard_size must be a positive integer: {shard_size!r}")
    manifest_folder, out = Path(manifest_folder), Path(out)
    jobs = []
    for name in subset_names(manifest_folder, subsets):
        for split in SPLITS:
            csv = manifest_folder / name / f"{split}.csv"
            jobs.append((csv, split_folder(out, name, split), split))
    tests, names = test_union(manifest_folder, test_sets)
    if not jobs and tests is None:
        raise PrepareError(f"no manifests in {manifest_folder} (run python -m prepare.voxceleb)")
    done = {}
    with folder_lock(out):
        for csv, folder, split in jobs:
            df = read_manifest(csv, required=("ID", "duration", "wav", "spk_id"))
            done[str(folder)] = write_split(df, folder, split, shard_size, seed, str(csv))
        if tests is not None:
            folder = split_folder(out, None, TEST_FOLDER)
            source = ", ".join(str(manifest_folder / TEST_FOLDER / f"{n}.csv") for n in names)
            done[str(folder)] = write_split(tests, folder, TEST_FOLDER, shard_size, seed, source)
    return done


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m prepare.shards",
        description="Write prepared manifests as WebDataset tar shards (train.py "
                    "--data_format shards --shard_folder OUT).")
    p.add_argument("--manifest_folder", required=True, help="prepare.voxceleb's --save_folder")
    p.add_argument("--out", required=True, help="the shard folder")
    p.add_argument("--subsets", nargs="+", default=None,
                   help="subsets to write (default: every subset of MANIFEST_FOLDER)")
    p.add_argument("--test_sets", nargs="*", default=None,
                   help="test sets whose files go to OUT/test (default: every prepared one; "
                        "the option without values writes none)")
    p.add_argument("--shard_size", type=int, default=SHARD_SIZE,
                   help="utterances per shard (default %(default)s, as the study)")
    p.add_argument("--seed", type=int, default=SEED,
                   help="seed of the speaker interleaving (default %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        done = write_shards(args.manifest_folder, args.out, args.subsets, args.test_sets,
                            args.shard_size, args.seed)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(index["samples"] for index in done.values())
    shards = sum(len(index["shards"]) for index in done.values())
    print(f"{len(done)} splits, {total} files in {shards} shards "
          f"(~{math.ceil(total / max(shards, 1))} per shard) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
