"""The study's published subset lists and validation trials: ``python -m prepare.study_lists``.

``python -m prepare.study_lists --out DIR`` downloads the five files the study
published (``meta/`` of its repository at the pinned commit; docs/study.md, 'The published
lists and their checksums') and checks their sha256; ``--from FOLDER`` takes them from a
folder instead (no network).  A file
whose checksum differs is refused, naming it, and nothing is written; files already in
``DIR`` with the right checksum are kept.  The original repository has no licence, so
this project downloads the files for its users and does not ship them.

``python -m prepare.voxceleb ... --study_lists DIR`` then reproduces the study's split
and subsets exactly (see :data:`LISTS` and :data:`TRIALS` for what each subset takes).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.request
from pathlib import Path

from lowres.io.atomic import atomic_path
from prepare.errors import USER_ERRORS, PrepareError

REPO = "nikvaessen/w2v2-speaker-few-samples"
COMMIT = "405c8a0eced91abb88e76209933cb1d85266c4cd"
URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/meta/{{name}}"
SHA256 = {
    "tiny_few_utterance_list.csv":
        "6d4db3099d6113bf2bcb2518655415979cc4902b3cff2e162945b92b01ccad21",
    "tiny_many_low_utterance_list.csv":
        "cbb35b7bbadbcb8ed76c8ca2449cc6fb80ce8f1b032e51fe795533a58df354a1",
    "tiny_many_high_utterance_list.csv":
        "759f53b4ab2b0afa4b763c2f393f9b30f93d0b893911165ab91871bdbd1aecf3",
    "val_trials.txt": "f823410565a5f387958611e583f0676681780024fc8e1210f948175ca7f012fd",
    "val_trials_tiny_few.txt": "4f555bf2432ecc445b6f2a3e373ec3cbf94e97054bb9e8f1af19fa7ad7e5d57e",
}
# Subset -> its published list.  full has none: its validation split is the validation
# rows of the tiny_many lists (identical in both), its train split every other file.
LISTS = {name: f"{name}_utterance_list.csv"
         for name in ("tiny_few", "tiny_many_low", "tiny_many_high")}
FULL_VAL_FROM = ("tiny_many_low", "tiny_many_high")
# Subset -> the validation trials the study's configs used (config/data/*.yaml).
TRIALS = {"full": "val_trials.txt", "tiny_few": "val_trials_tiny_few.txt",
          "tiny_many_low": "val_trials.txt", "tiny_many_high": "val_trials_tiny_few.txt"}
# The authors' copy of VoxCeleb2 dev: 1,091,588 files, ~421 fewer than the official release.
STUDY_DEV_FILES = 1_091_588
STUDY_FULL_TRAIN_FILES = 1_068_871
OFFICIAL_DEV_FILES = 1_092_009
TIMEOUT_S = 60


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def by_hand(out: str | Path) -> str:
    """How to place the five files by hand (for a machine without network)."""
    lines = [f"Place these five files in {out} by hand (from {REPO}, commit {COMMIT}), "
             f"or copy them to a folder and run python -m prepare.study_lists --out {out} "
             "--from FOLDER:"]
    lines += [f"  {name}  sha256 {digest}\n    {URL.format(name=name)}"
              for name, digest in SHA256.items()]
    return "\n".join(lines)


def check_folder(folder: str | Path) -> dict[str, str]:
    """File name -> sha256 of the five published files in ``folder``, all checked.

    Raises PrepareError naming every missing file or file whose checksum differs.
    """
    folder = Path(folder)
    missing = [name for name in SHA256 if not (folder / name).is_file()]
    if missing:
        raise PrepareError(f"study lists folder {folder} lacks {', '.join(missing)} "
                           f"(get them with: python -m prepare.study_lists --out {folder})")
    bad = [f"{folder / name} (sha256 {got}, expected {SHA256[name]})"
           for name in SHA256 if (got := sha256_file(folder / name)) != SHA256[name]]
    if bad:
        raise PrepareError("not the study's published file: " + "; ".join(bad))
    return dict(SHA256)


def _download(name: str, out: Path) -> bytes:
    url = URL.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise PrepareError(f"cannot download {url}: {getattr(e, 'reason', e)}\n"
                           + by_hand(out)) from e


def get_lists(out: str | Path, source: str | Path | None = None) -> list[str]:
    """Put the five published files in ``out``; returns the names written.

    From ``source`` (a folder) when given, else downloaded.  Every file is checked
    before any is written, so ``out`` never holds a file with a wrong checksum.
    """
    out = Path(out)
    todo = [name for name in SHA256
            if not ((out / name).is_file() and sha256_file(out / name) == SHA256[name])]
    data: dict[str, bytes] = {}
    for name in todo:
        if source is None:
            data[name] = _download(name, out)
        elif (Path(source) / name).is_file():
            data[name] = (Path(source) / name).read_bytes()
        else:
            raise PrepareError(f"{Path(source) / name} not found (the five files: "
                               f"{', '.join(SHA256)})")
    where = {name: str(Path(source) / name) if source is not None else URL.format(name=name)
             for name in data}
    bad = [f"{where[name]} (sha256 {got}, expected {SHA256[name]})"
           for name, blob in data.items()
           if (got := hashlib.sha256(blob).hexdigest()) != SHA256[name]]
    if bad:
        raise PrepareError("refused, not the study's published file: " + "; ".join(bad))
    for name, blob in data.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(blob)
    return list(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m prepare.study_lists",
        description=f"Fetch the study's five published lists ({REPO} at {COMMIT[:10]}, "
                    "meta/) and check their sha256; then use them with "
                    "python -m prepare.voxceleb --study_lists DIR.")
    p.add_argument("--out", required=True, help="folder for the five files")
    p.add_argument("--from", dest="source", metavar="FOLDER",
                   help="take the files from this folder instead of downloading them")
    args = p.parse_args(argv)
    try:
        written = get_lists(args.out, args.source)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kept = len(SHA256) - len(written)
    print(f"{args.out}: {len(written)} file(s) written, {kept} already there; "
          "all five match the study's sha256", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
