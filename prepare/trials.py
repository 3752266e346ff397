"""Stage 4: validation trials of a subset (STUDY.md §1, "Validation trials").

Balanced target / non-target pairs drawn from the subset's validation files:

- target pairs cycle over the speakers (in a seeded random order), each visit
  drawing a new pair of two different files of that speaker;
- non-target pairs are same-gender; each pair takes the two least-used speakers
  of its gender so far (ties broken at random), so they spread evenly over the
  speakers; the genders share the non-targets in proportion to their speakers.

No pair appears twice.  When the data cannot supply ``n_trials`` (too few
files or speakers), fewer are made, still balanced, with a PrepareWarning.
Deterministic for a given seed and set of validation files.
"""

from __future__ import annotations

import heapq
import warnings

import numpy as np
import pandas as pd

from prepare.errors import PrepareWarning

MAX_TRIES = 30


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


def nontarget_pairs(files: dict[str, list[str]], speakers: list[str], n: int,
                    rng: np.random.Generator) -> list[tuple[str, str]]:
    """Up to ``n`` distinct pairs of files of two different speakers from ``speakers``.

    Each pair takes the two least-used speakers (ties at random).
    """
    if len(speakers) < 2 or n <= 0:
        return []
    heap = [(0, float(rng.random()), s) for s in speakers]
    heapq.heapify(heap)
    seen: set[tuple[str, str]] = set()
    full_pairs: set[tuple[str, str]] = set()  # speaker pairs with no unused file pair left
    out: list[tuple[str, str]] = []
    while len(out) < n and len(heap) >= 2:
        ua, ta, a = heapq.heappop(heap)
        skipped, made = [], False
        while heap and not made:
            ub, tb, b = heapq.heappop(heap)
            skipped.append((ub, tb, b))
            if (min(a, b), max(a, b)) in full_pairs:
                continue
            fa, fb = files[a], files[b]
            for _ in range(MAX_TRIES):
                pair = (fa[rng.integers(len(fa))], fb[rng.integers(len(fb))])
                key = (min(pair), max(pair))
                if key not in seen:
                    seen.add(key)
                    out.append(pair)
                    made = True
                    skipped[-1] = (ub + 1, float(rng.random()), b)
                    break
            else:
                if len(fa) * len(fb) <= MAX_TRIES:
                    full_pairs.add((min(a, b), max(a, b)))
        for item in skipped:
            heapq.heappush(heap, item)
        if made:  # a speaker that pairs with nobody any more drops out
            heapq.heappush(heap, (ua + 1, float(rng.random()), a))
    return out


def make_val_trials(val: pd.DataFrame, n_trials: int, seed: int = 1337,
                    name: str = "subset") -> pd.DataFrame:
    """Balanced validation trials: columns label (1 target, 0 non-target), path1, path2.

    Paths are ``<ID>.wav`` (``spk/session/utt.wav``).
    """
    rng = np.random.default_rng([int(seed), 7919])
    files = _files_by_speaker(val)
    half = n_trials // 2
    targets = target_pairs(files, half, rng)
    genders = val.drop_duplicates("spk_id").set_index("spk_id").gender.sort_index()
    by_gender = {g: list(s.index) for g, s in genders.groupby(genders, sort=True)}
    usable = {g: s for g, s in by_gender.items() if len(s) >= 2}
    total = sum(len(s) for s in usable.values())
    nontargets: list[tuple[str, str]] = []
    if total:
        want = len(targets)
        shares = {g: want * len(s) / total for g, s in usable.items()}
        quota = {g: int(v) for g, v in shares.items()}
        for g in sorted(shares, key=lambda g: quota[g] - shares[g])[: want - sum(quota.values())]:
            quota[g] += 1
        for g in sorted(usable):
            nontargets += nontarget_pairs(files, usable[g], quota[g], rng)
    n = min(len(targets), len(nontargets))
    if 2 * n < n_trials:
        warnings.warn(
            f"{name}: the validation data ({len(val)} files, {len(files)} speakers) supplies "
            f"only {2 * n} balanced trials of the {n_trials} asked for",
            PrepareWarning, stacklevel=2,
        )
    rows = [(1, a, b) for a, b in targets[:n]] + [(0, a, b) for a, b in nontargets[:n]]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    df = pd.DataFrame(rows, columns=["label", "path1", "path2"])
    df["path1"] = df.path1 + ".wav"
    df["path2"] = df.path2 + ".wav"
    return df

