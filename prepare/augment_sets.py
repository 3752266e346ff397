"""SpeechBrain-style CSVs of the augmentation collections MUSAN and RIRS_NOISES.

    python -m prepare.augment_sets --musan DIR/musan --rirs DIR/RIRS_NOISES \
        --save_folder MANIFESTS/augment [--rir_sets smallroom,mediumroom,largeroom]

Expected input, as the archives extract (either collection may be left out):

- MUSAN (openslr.org/17): ``musan/{noise,music,speech}/<source>/*.wav``, e.g.
  ``musan/noise/free-sound/noise-free-sound-0000.wav``;
- RIRS_NOISES (openslr.org/28): ``RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,
  largeroom}/RoomNNN/*.wav`` and ``RIRS_NOISES/real_rirs_isotropic_noises/*.wav``, each
  set with its Kaldi ``rir_list`` (lines ``--rir-id ID --room-id ROOM RIRS_NOISES/...wav``),
  which is what is read: only the impulse responses a list names are used, never the
  isotropic or point-source noises beside them.

writes (atomically) ``musan_noise.csv``, ``musan_music.csv``, ``musan_speech.csv`` and
``rirs.csv`` in the save folder, SpeechBrain's CSV layout for its augmenters
(``ID, duration, wav, wav_format, wav_opts``; ``ID`` is the file's path in its collection
without ``.wav``, ``duration`` in seconds from the wav header). ``--rir_sets`` picks the
impulse-response sets (default: every simulated room, as WeSpeaker's VoxCeleb recipe;
Kaldi's uses smallroom,mediumroom). Files must be 16 kHz wavs (the collections are); a
multi-channel impulse response is used by its first channel. A wrong folder, a missing
list or a listed file that is missing is a :class:`prepare.errors.PrepareError` naming
it; the CLI prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lowres.io.atomic import atomic_path
from lowres.io.audio_headers import read_durations
from prepare.errors import USER_ERRORS, PrepareError

MUSAN_KINDS = ("noise", "music", "speech")
RIR_SETS = {
    "smallroom": "simulated_rirs/smallroom",
    "mediumroom": "simulated_rirs/mediumroom",
    "largeroom": "simulated_rirs/largeroom",
    "real": "real_rirs_isotropic_noises",
}
DEFAULT_RIR_SETS = ("smallroom", "mediumroom", "largeroom")
CSV_COLUMNS = ("ID", "duration", "wav", "wav_format", "wav_opts")
RIRS_CSV = "rirs.csv"
MUSAN_LAYOUT = "musan/{noise,music,speech}/<source>/*.wav"
RIRS_LAYOUT = ("RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/rir_list and "
               "RIRS_NOISES/real_rirs_isotropic_noises/rir_list")


def musan_csv_name(kind: str) -> str:
    return f"musan_{kind}.csv"


def _hint(folder: Path, name: str) -> str:
    """' (did you mean folder/name?)' when the user gave the folder above the collection."""
    return f" (did you mean {folder / name}?)" if (folder / name).is_dir() else ""


def musan_files(folder: str | Path) -> dict[str, list[Path]]:
    """The wav files of each MUSAN kind (``noise``, ``music``, ``speech``), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrepareError(f"MUSAN folder not found: {folder}")
    missing = [k for k in MUSAN_KINDS if not (folder / k).is_dir()]
    if missing:
        raise PrepareError(f"{folder} is not a MUSAN folder: it has no {', '.join(missing)} "
                           f"subfolder (expected {MUSAN_LAYOUT}){_hint(folder, 'musan')}")
    files = {}
    for kind in MUSAN_KINDS:
        files[kind] = sorted((folder / kind).glob("*/*.wav"))
        if not files[kind]:
            loose = sorted((folder / kind).rglob("*.wav"))
            where = f"; its {len(loose)} wav files are not one folder deep, e.g. {loose[0]}" \
                if loose else ""
            raise PrepareError(f"MUSAN folder {folder}: no {kind}/<source>/*.wav files "
                               f"(expected {MUSAN_LAYOUT}){where}")
    return files


def _rir_list(folder: Path, set_name: str) -> list[Path]:
    """The impulse responses a set's ``rir_list`` names (paths ``RIRS_NOISES/...``)."""
    path = folder / RIR_SETS[set_name] / "rir_list"
    if not path.is_file():
        raise PrepareError(f"RIRS_NOISES folder {folder}: {path} not found (expected "
                           f"{RIRS_LAYOUT}){_hint(folder, 'RIRS_NOISES')}")
    files = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cells = line.split()
        if not cells:
            continue
        rel = Path(cells[-1])
        if "--rir-id" not in cells or not rel.parts or rel.parts[0] != "RIRS_NOISES" \
                or rel.suffix != ".wav":
            raise PrepareError(f"malformed rir_list {path}, line {n}: {line.strip()!r} "
                               "(expected '--rir-id ID --room-id ROOM RIRS_NOISES/...wav')")
        files.append(folder.joinpath(*rel.parts[1:]))
    if not files:
        raise PrepareError(f"rir_list is empty: {path}")
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise PrepareError(f"{path} names {len(absent)} missing file(s), e.g. {absent[0]}")
    return files


def rir_files(folder: str | Path, sets: Sequence[str] = DEFAULT_RIR_SETS) -> list[Path]:
    """The impulse responses of the chosen ``sets`` of a RIRS_NOISES folder, in list order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrepareError(f"RIRS_NOISES folder not found: {folder}")
    unknown = [s for s in sets if s not in RIR_SETS]
    if unknown or not sets:
        raise PrepareError(f"unknown RIR set(s) {', '.join(unknown) or '(none given)'} "
                           f"(choose from {', '.join(RIR_SETS)})")
    if not any((folder / d).is_dir() for d in ("simulated_rirs", "real_rirs_isotropic_noises")):
        raise PrepareError(f"{folder} is not a RIRS_NOISES folder: it has neither "
                           "simulated_rirs/ nor real_rirs_isotropic_noises/ (expected "
                           f"{RIRS_LAYOUT}){_hint(folder, 'RIRS_NOISES')}")
    return [f for s in dict.fromkeys(sets) for f in _rir_list(folder, s)]


def collection_frame(root: Path, files: list[Path], jobs: int = 1, mono: bool = True,
                     desc: str = "read wav headers") -> pd.DataFrame:
    """The rows of one SpeechBrain augmentation CSV of ``files`` (IDs relative to ``root``)."""
    durations = read_durations([str(f) for f in files], jobs, desc=desc, mono=mono)
    return pd.DataFrame({
        "ID": [f.relative_to(root).with_suffix("").as_posix() for f in files],
        "duration": durations,
        "wav": [str(f.resolve()) for f in files],
        "wav_format": "wav",
        "wav_opts": "",
    })[list(CSV_COLUMNS)]


def prepare_augment_sets(save_folder: str | Path, musan: str | Path | None = None,
                         rirs: str | Path | None = None,
                         rir_sets: Sequence[str] = DEFAULT_RIR_SETS,
                         jobs: int = 4) -> dict[str, int]:
    """Write the CSVs of the collections given; returns ``{csv name: rows}``.

    Every file is checked before anything is written."""
    if musan is None and rirs is None:
        raise PrepareError("nothing to prepare: give a MUSAN folder, a RIRS_NOISES folder "
                           "or both")
    frames = {}
    if musan is not None:
        for kind, files in musan_files(musan).items():
            frames[musan_csv_name(kind)] = collection_frame(Path(musan), files, jobs,
                                                            desc=musan_csv_name(kind))
    if rirs is not None:
        frames[RIRS_CSV] = collection_frame(Path(rirs), rir_files(rirs, rir_sets), jobs,
                                            mono=False, desc=RIRS_CSV)
    for name, df in frames.items():
        with atomic_path(Path(save_folder) / name) as tmp:
            df.to_csv(tmp, index=False)
    return {name: len(df) for name, df in frames.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m prepare.augment_sets",
        description="SpeechBrain-style CSVs (with durations) of MUSAN and RIRS_NOISES for "
        "training-time augmentation (lowres.data.augment).")
    p.add_argument("--musan", type=Path, help=f"the MUSAN folder ({MUSAN_LAYOUT})")
    p.add_argument("--rirs", type=Path, help="the RIRS_NOISES folder")
    p.add_argument("--save_folder", type=Path, required=True,
                   help="where the CSVs go (train.py's augment_folder, by default "
                   "<manifest_folder>/augment)")
    p.add_argument("--rir_sets", default=",".join(DEFAULT_RIR_SETS),
                   help=f"comma-separated impulse-response sets of {', '.join(RIR_SETS)} "
                   f"(default: {','.join(DEFAULT_RIR_SETS)})")
    p.add_argument("--jobs", type=int, default=4, help="threads reading wav headers")
    args = p.parse_args(argv)
    sets = args.rir_sets.replace(",", " ").split()
    try:
        counts = prepare_augment_sets(args.save_folder, args.musan, args.rirs, sets, args.jobs)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, rows in counts.items():
        print(f"{args.save_folder / name}: {rows} files")
    for folder in (args.musan, args.rirs):
        readme = folder / "README.txt" if folder is not None else None
        if readme is not None and readme.is_file() and "SYNTHETIC" in readme.read_text():
            print(f"NOTE: {folder} is a SYNTHETIC stand-in (python -m prepare.synthetic "
                  "--augment_sets), not the real collection.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
