"""The demo's checks: the study's claims as paired comparisons of the demo's runs.

Per test set, nine comparisons of EER (:mod:`lowres.study.results.compare`: both runs under
the same speaker draws, the interval of their difference, Holm's correction), the first
side of each being the one the study expects lower:

* the pre-trained wav2vec2 against the random-init one on each subset (the study's main
  claim, 3);
* tiny_many_high against tiny_many_low for each model row (the study's ordering, 4);
* the pre-trained wav2vec2 against x-vector and against ECAPA-TDNN on tiny_few (2).

Each test set is its own Holm family: O, E and H ask the same question of different
speakers, and each has its own table and checks.  One family over all three would hold 27
comparisons, and with 1,000 draws no p-value can be below ``2 / 1001``, so Holm over more
than 25 can never hold (docs/intervals.md).  For the same reason the trained runs are not
compared with their untrained selves (12 more comparisons): the untrained models sit near
chance, which the table shows beside them.

A check whose runs are not finished, or have no score file of the test set, reads
"incomplete" and is left out of the family: the demo prints its checks while runs are
still missing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowres.scoring.bootstrap import LEVEL
from lowres.study.grids.definitions import DEMO_SUBSETS
from lowres.study.results.compare import compare_all
from lowres.study.results.intervals import ScoreDraws, score_file
from lowres.study.results.tables import demo_cells, demo_label

__all__ = ["DEMO_CHECKS", "demo_checks"]

_PRE, _RANDOM = ("wav2vec2", "pretrained"), ("wav2vec2", "random_init")
_ROWS = (("xvector", ""), ("ecapa", ""), _RANDOM, _PRE)
# (subject, side a, side b): a side is (row key, column of the demo's table); the study
# expects a below b
DEMO_CHECKS = (
    *((subset, (_PRE, subset), (_RANDOM, subset)) for subset in DEMO_SUBSETS),
    *((row, (row, "tiny_many_high"), (row, "tiny_many_low")) for row in _ROWS),
    *(("tiny_few", (_PRE, "tiny_few"), (row, "tiny_few")) for row in _ROWS[:2]),
)


def _subject(subject: str | tuple[str, str], cells: dict) -> str:
    return subject if isinstance(subject, str) else demo_label(subject, cells)


def _side_label(side: tuple[tuple[str, str], str], other: tuple[tuple[str, str], str],
                cells: dict) -> str:
    """The row's label where the two sides differ in their row, else the column."""
    key, column = side
    return column if key == other[0] else demo_label(key, cells)


def demo_checks(frame: pd.DataFrame, root: str | Path, source: ScoreDraws,
                test_set: str = "original", level: float = LEVEL) -> list[str]:
    """One line per check of :data:`DEMO_CHECKS` on ``test_set``: compare's verdict with
    the demo's labels, e.g. "tiny_few: wav2vec2 (pre-trained) below wav2vec2 (random init)
    by 10.74 [5.50, 15.67] points, holds after Holm over 9 comparisons (...)", or
    "x-vector: tiny_many_high vs tiny_many_low: incomplete".  ``frame``'s runs are folders
    below ``root``; ``source`` gives their speaker draws."""
    cells = demo_cells(frame)
    lines: dict[int, str] = {}
    ready = []
    for i, (subject, a, b) in enumerate(DEMO_CHECKS):
        name, label_a, label_b = (_subject(subject, cells), _side_label(a, b, cells),
                                  _side_label(b, a, cells))
        runs = [Path(root) / cells[side]["run"] for side in (a, b) if side in cells]
        if len(runs) < 2 or any(score_file(run, test_set) is None for run in runs):
            lines[i] = f"{name}: {label_a} vs {label_b}: incomplete"
        else:
            ready.append((i, name, label_a, label_b, runs))
    try:
        found = compare_all([tuple(runs) for *_, runs in ready], [test_set], ["eer"],
                            level=level, draws=source.draws, seed=source.seed, source=source)
    except ValueError as err:  # runs tested on other trial lists than the rest
        found = [f"not compared ({err})"] * len(ready)
    for (i, name, label_a, label_b, _), c in zip(ready, found, strict=True):
        verdict = c if isinstance(c, str) else c._replace(a=label_a, b=label_b).verdict
        lines[i] = f"{name}: {verdict}"
    return [lines[i] for i in sorted(lines)]
