"""Stage 4: validation trials of a subset, with the statistics of the study's generator.

The study's lists came from its ``scripts/data/generate_trials.py`` (docs/study.md, 'Data
in the published runs'); this module makes lists with the same statistics from a seeded
numpy Generator (the original
was not seeded, so its draws cannot be replayed: the published lists themselves are
used with ``python -m prepare.voxceleb --study_lists``):

- ``n_trials // 2`` target pairs: the speakers with at least two files are visited in
  turn (in a seeded order), each visit taking a new random pair of two different files
  of that speaker, same-session pairs allowed (the published 30k list: 67 % of its
  targets, tiny_few's: 46 %); a speaker leaves the cycle when its pairs run out.
- as many non-target pairs: two different speakers drawn at random, favouring slightly
  the least used (weight ``2 * pairs_so_far - uses + 1``, the original's), kept only
  when both have the same gender; then a random unused pair of their files.  By this
  rejection a gender's expected share of the non-targets is ``n_g (n_g - 1)`` over the
  sum of that for both genders, about the square of its speaker share (the published 30k
  list: 71.9 % male non-targets on 61.4 % male speakers), and the shares vary from seed
  to seed as the original's did.  Speakers' uses are spread at random, not evenly.
- the lines alternate non-target, target (as in the published lists).

No pair appears twice.  When the data cannot supply ``n_trials`` (too few files or
speakers), fewer are made, still balanced, with a PrepareWarning.  Deterministic for a
given seed and set of validation files (their row order does not matter).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from prepare.errors import PrepareWarning

GENERATOR = "prepare.trials.make_val_trials/2"  # recorded with every generated list
MAX_TRIES = 30  # random file pairs tried for one speaker pair before enumerating them
MAX_IDLE = 200_000  # consecutive draws that add nothing before the data counts as spent
BLOCK = 4096


def _files_by_speaker(val: pd.DataFrame) -> dict[str, list[str]]:
    ids = val.sort_values("ID")
    return {spk: list(g) for spk, g in ids.groupby("spk_id", sort=True).ID}


def target_pairs(files: dict[str, list[str]], n: int, rng: np.random.Generator
                 ) -> list[tuple[str, str]]:
    """Up to ``n`` distinct same-speaker pairs, cycling over speakers."""
    order = [s for s in sorted(files) if len(files[s]) >= 2]
    order = [order[i] for i in rng.permutation(len(order))]
    used: dict[str, set] = {s: set() for s in order}
    out: list[tuple[str, str]] = []
    while len(out) < n and order:
        still = []
        for spk in order:
            if len(out) >= n:
                still.append(spk)
                continue
            fs = files[spk]
            m = len(fs)
            if len(used[spk]) >= m * (m - 1) // 2:
                continue
            while True:
                i, j = rng.choice(m, size=2, replace=False)
                if (min(i, j), max(i, j)) not in used[spk]:
                    break
            used[spk].add((min(i, j), max(i, j)))
            out.append((fs[i], fs[j]))
            if len(used[spk]) < m * (m - 1) // 2:
                still.append(spk)
        order = still
    return out


def _uniforms(rng: np.random.Generator) -> Iterator[float]:
    """An endless stream of uniform [0, 1) draws, taken from ``rng`` in blocks (speed)."""
    while True:
        yield from rng.random(BLOCK).tolist()


def _new_file_pair(fa: list[str], fb: list[str], seen: set, rng: np.random.Generator
                   ) -> tuple[str, str] | None:
    """A random pair (file of a, file of b) not in ``seen``; None when all are used."""
    m = len(fa) * len(fb)
    if m > MAX_TRIES:
        for _ in range(MAX_TRIES):
            pair = (fa[rng.integers(len(fa))], fb[rng.integers(len(fb))])
            if frozenset(pair) not in seen:
                return pair
    for k in rng.permutation(m):
        pair = (fa[k // len(fb)], fb[k % len(fb)])
        if frozenset(pair) not in seen:
            return pair
    return None


def nontarget_pairs(files: dict[str, list[str]], genders: dict[str, str], n: int,
                    rng: np.random.Generator) -> list[tuple[str, str]]:
    """Up to ``n`` distinct same-gender pairs of files of two different speakers.

    Speakers are drawn as the module doc says (rejection of mixed-gender draws).
    """
    speakers = sorted(files)
    gender = [genders[s] for s in speakers]
    sizes = pd.Series([len(files[s]) for s in speakers]).groupby(gender)
    capacity = int(sum((g.sum() ** 2 - (g ** 2).sum()) // 2 for _, g in sizes))
    want, n_spk = min(n, capacity), len(speakers)
    uses = np.zeros(n_spk, dtype=np.int64)
    seen: set[frozenset] = set()
    spent: set[tuple[int, int]] = set()  # speaker pairs with no unused file pair left
    out: list[tuple[str, str]] = []
    u = _uniforms(rng)

    def draw(other: int) -> int:
        top = 2 * len(out) + 1  # the weight of an unused speaker; every weight is >= 1
        while True:
            i = int(next(u) * n_spk)
            if i != other and next(u) * top < top - uses[i]:
                return i

    idle = 0
    while len(out) < want and idle < MAX_IDLE:
        a = draw(-1)
        b = draw(a)
        idle += 1
        if gender[a] != gender[b] or (min(a, b), max(a, b)) in spent:
            continue
        pair = _new_file_pair(files[speakers[a]], files[speakers[b]], seen, rng)
        if pair is None:
            spent.add((min(a, b), max(a, b)))
            continue
        seen.add(frozenset(pair))
        out.append(pair)
        uses[a] += 1
        uses[b] += 1
        idle = 0
    return out


def make_val_trials(val: pd.DataFrame, n_trials: int, seed: int = 1337,
                    name: str = "subset") -> pd.DataFrame:
    """Balanced validation trials: columns label (1 target, 0 non-target), path1, path2.

    Paths are ``<ID>.wav`` (``spk/session/utt.wav``).
    """
    rng = np.random.default_rng([int(seed), 7919])
    files = _files_by_speaker(val)
    genders = dict(zip(val.spk_id, val.gender, strict=True))
    targets = target_pairs(files, n_trials // 2, rng)
    nontargets = nontarget_pairs(files, genders, len(targets), rng)
    n = min(len(targets), len(nontargets))
    if 2 * n < n_trials:
        warnings.warn(
            f"{name}: the validation data ({len(val)} files, {len(files)} speakers) supplies "
            f"only {2 * n} balanced trials of the {n_trials} asked for",
            PrepareWarning, stacklevel=2,
        )
    rows = [row for pair in zip(nontargets[:n], targets[:n], strict=True)
            for row in ((0, *pair[0]), (1, *pair[1]))]
    df = pd.DataFrame(rows, columns=["label", "path1", "path2"])
    df["path1"] = df.path1 + ".wav"
    df["path2"] = df.path2 + ".wav"
    return df
