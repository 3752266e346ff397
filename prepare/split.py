"""Stage 3a: the session-disjoint validation split of VoxCeleb2 dev (docs/study.md,
'Train and validation split').

Per speaker, whole sessions move to validation until more than
``val_fraction`` of that speaker's files are there: draw 3 random sessions
still in train, move the smallest (fewest files) of them, repeat; a speaker
always keeps at least one session in train.  Seeded per speaker.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prepare.seeding import speaker_rng

DRAW = 3


def choose_val_sessions(sessions: list[str], counts: np.ndarray, val_fraction: float,
                        rng: np.random.Generator) -> list[str]:
    """The sessions of one speaker that go to validation (the rule above)."""
    in_train = list(range(len(sessions)))
    total, moved, chosen = int(counts.sum()), 0, []
    while moved <= val_fraction * total and len(in_train) > 1:
        drawn = rng.choice(len(in_train), size=min(DRAW, len(in_train)), replace=False)
        smallest = min(drawn, key=lambda i: (counts[in_train[i]], sessions[in_train[i]]))
        s = in_train.pop(smallest)
        chosen.append(sessions[s])
        moved += int(counts[s])
    return chosen


def split_validation(listing: pd.DataFrame, val_fraction: float = 0.01,
                     seed: int = 1337) -> pd.Series:
    """Boolean Series aligned with ``listing``: True for files in the validation split."""
    sizes = listing.groupby(["spk_id", "session"], sort=True).size()
    spk_index = sizes.index.get_level_values(0)
    ses_index = sizes.index.get_level_values(1).to_numpy()
    counts = sizes.to_numpy()
    # Contiguous block per speaker (sorted index): slice instead of a groupby per speaker.
    starts = np.flatnonzero(np.r_[True, spk_index[1:] != spk_index[:-1]])
    ends = np.r_[starts[1:], len(sizes)]
    val_pairs = []
    for a, b in zip(starts, ends, strict=True):
        spk = spk_index[a]
        rng = speaker_rng(seed, spk, "val_split")
        for ses in choose_val_sessions(list(ses_index[a:b]), counts[a:b], val_fraction, rng):
            val_pairs.append(spk + "/" + ses)
    key = listing.spk_id + "/" + listing.session
    return key.isin(set(val_pairs)).rename("is_val")
