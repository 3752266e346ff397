"""Reading the official VoxCeleb meta files (speaker -> gender, set).

The files seen in the wild differ: ``vox1_meta.csv`` is tab-separated,
``vox2_meta.csv`` comma-separated with values padded by trailing spaces, some
copies start with a byte-order mark, headers are spelled ``VoxCeleb1 ID`` /
``VoxCeleb2 ID`` / ``ID`` / ``Gender`` / ``gender`` ..., and some copies have no
header at all.  :func:`read_meta` accepts all of these and fails with a
:class:`PrepareError` naming the file and line for anything else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from prepare.errors import PrepareError

SPEAKER_ID = re.compile(r"^id\d{5}$")
GENDERS = {"m": "m", "male": "m", "f": "f", "female": "f"}


def _split_line(line: str, sep: str) -> list[str]:
    return [v.strip() for v in line.split(sep)]


def _column(header: list[str], *words: str) -> int | None:
    """Index of the first header cell containing one of ``words`` (case-insensitive)."""
    for i, name in enumerate(header):
        low = name.lower()
        if any(w in low for w in words):
            return i
    return None


def read_meta(path: str | os.PathLike) -> pd.DataFrame:
    """Read a VoxCeleb1/2 meta file into columns ``spk_id, gender, set`` (one row per speaker).

    ``gender`` is ``m`` or ``f``; ``set`` is e.g. ``dev``/``test`` (empty when absent).
    """
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"meta file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise PrepareError(f"cannot read meta file {path}: {e}") from e
    lines = [(n, ln.lstrip("\ufeff")) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not lines:
        raise PrepareError(f"meta file is empty: {path}")
    first = lines[0][1]
    sep = "\t" if "\t" in first else ";" if ";" in first and "," not in first else ","
    head = _split_line(first, sep)
    if SPEAKER_ID.match(head[0]):
        # No header: official column order (ID, VGGFace ID, Gender, [Nationality,] Set).
        id_col, gender_col, set_col = 0, 2, len(head) - 1
        rows = lines
    else:
        id_col = _column(head, "voxceleb", "id")
        gender_col = _column(head, "gender", "sex")
        set_col = _column(head, "set", "split")
        if id_col is None or gender_col is None:
            raise PrepareError(
                f"malformed meta file {path}: header {first.strip()!r} has no speaker id "
                "and gender columns"
            )
        # 'VGGFace ID' also contains 'id': prefer the column whose values look like idNNNNN.
        rows = lines[1:]
        if rows:
            cells = _split_line(rows[0][1], sep)
            for i, v in enumerate(cells):
                if SPEAKER_ID.match(v):
                    id_col = i
                    break
    records = []
    for n, line in rows:
        cells = _split_line(line, sep)
        need = max(id_col, gender_col, set_col if set_col is not None else 0)
        if len(cells) <= need:
            raise PrepareError(
                f"malformed meta file {path}, line {n}: expected at least {need + 1} "
                f"{'tab' if sep == chr(9) else repr(sep)}-separated fields, got {line.strip()!r}"
            )
        spk, gender = cells[id_col], cells[gender_col].lower()
        if not SPEAKER_ID.match(spk):
            raise PrepareError(f"malformed meta file {path}, line {n}: bad speaker id {spk!r}")
        if gender not in GENDERS:
            raise PrepareError(
                f"malformed meta file {path}, line {n}: gender {cells[gender_col]!r} "
                "is not m/f"
            )
        subset = cells[set_col].lower() if set_col is not None else ""
        records.append((spk, GENDERS[gender], subset))
    if not records:
        raise PrepareError(f"meta file has a header but no speakers: {path}")
    df = pd.DataFrame.from_records(records, columns=["spk_id", "gender", "set"])
    dup = df.spk_id[df.spk_id.duplicated()]
    if len(dup):
        raise PrepareError(f"malformed meta file {path}: speaker {dup.iloc[0]} listed twice")
    return df


def gender_map(path: str | os.PathLike) -> dict[str, str]:
    """Speaker id -> ``m``/``f`` from a meta file."""
    df = read_meta(path)
    return dict(zip(df.spk_id, df.gender, strict=True))
