"""Node-local copies of a run's shards, made before training (slurm/task.sh, LOWRES_STAGE=1).

    python -m lowres.data.staging --dest DIR [--verify] --command "python train.py HPARAMS ..."

For a train.py command with ``data_format: shards`` this copies what the run reads,
``S/<subset>/train``, ``S/<subset>/val`` and (when it evaluates) ``S/test``, from its
``shard_folder`` S to DIR, in the same layout, and prints DIR for ``--shard_folder``;
for ``data_format: files`` it prints nothing.  A split folder already in DIR with the
same ``index.json`` and every file of the size it lists (``--verify``: and its sha256)
is kept: jobs sharing a node, or a requeued task landing on the same node, copy once.
Each split is copied under a temporary name and renamed whole, so DIR never holds half a
copy; concurrent stagings into one DIR wait for each other.  Removing the copies when the
job ends is slurm/task.sh's (it knows whether other tasks still use them).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shlex
import shutil
import sys
from pathlib import Path

from lowres.data.shards import INDEX_FILE, TEST_FOLDER, read_index, split_folder
from lowres.io.atomic import atomic_folder, folder_lock, read_json
from lowres.io.hparams import HparamsError, invalid_hparam
from lowres.io.lists import ListError

log = logging.getLogger("lowres.data.staging")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_copy(folder: Path, index: dict, verify: bool = False) -> bool:
    """``folder`` holds the split that ``index`` describes: the same index and every shard
    and member table present, shards of the listed size (and sha256 with ``verify``)."""
    if read_json(folder / INDEX_FILE) != index:
        return False
    for entry in index["shards"]:
        shard = folder / entry["name"]
        if not (folder / entry["table"]).is_file() or not shard.is_file() \
                or shard.stat().st_size != entry["bytes"]:
            return False
        if verify and _sha256(shard) != entry["sha256"]:
            return False
    return True


def stage_split(src: Path, dst: Path, verify: bool = False) -> bool:
    """Copy one split folder unless it is there already; True when it copied."""
    index = read_index(src)
    if is_copy(dst, index, verify):
        log.info("%s: already in %s, not copied", src, dst)
        return False
    with atomic_folder(dst) as tmp:
        for entry in index["shards"]:
            shutil.copyfile(src / entry["table"], tmp / entry["table"])
            shutil.copyfile(src / entry["name"], tmp / entry["name"])
        shutil.copyfile(src / INDEX_FILE, tmp / INDEX_FILE)
        if not is_copy(tmp, index, verify):  # the source changed while it was copied
            raise ListError(f"{src} changed while it was copied to {dst}; stage again")
    log.info("%s: copied to %s (%.1f MB)", src, dst,
             sum(e["bytes"] for e in index["shards"]) / 1e6)
    return True


def stage(shard_folder: str | Path, subset: str, dest: str | Path, test: bool = True,
          verify: bool = False) -> Path:
    """Copy the splits of ``subset`` (and ``S/test`` with ``test``) to ``dest``; returns
    ``dest``, the run's ``shard_folder`` from now on."""
    dest = Path(dest)
    splits = ["train", "val", *([TEST_FOLDER] if test else [])]
    with folder_lock(dest, ".stage.lock"):
        for split in splits:
            stage_split(split_folder(shard_folder, subset, split),
                        split_folder(dest, subset, split), verify)
    return dest


def stage_command(command: list[str], dest: str | Path, verify: bool = False) -> Path | None:
    """Stage what the train.py ``command`` (``python train.py HPARAMS --key=value ...``)
    reads; None when it trains from files."""
    import speechbrain as sb

    from lowres.io.hparams import plain_values

    if len(command) < 3:
        raise HparamsError(f"not a train.py command: {command}")
    hparams_file, _, overrides = sb.parse_arguments(command[2:])
    values = plain_values(hparams_file, overrides)
    if values.get("data_format", "files") != "shards":
        return None
    if not values.get("shard_folder"):
        raise invalid_hparam("shard_folder", None, "data_format shards needs it")
    return stage(values["shard_folder"], values["subset"], dest,
                 test=bool(values.get("evaluate_after_training")), verify=verify)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lowres.data.staging", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", required=True, help="node-local folder for the copies")
    p.add_argument("--verify", action="store_true",
                   help="compare the sha256 of copies already there (default: their sizes)")
    p.add_argument("--command", required=True,
                   help="the train.py command line (as python -m lowres.grid task --print "
                        "prints it)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        staged = stage_command(shlex.split(args.command), args.dest, args.verify)
    except (HparamsError, ListError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if staged is not None:
        print(staged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
