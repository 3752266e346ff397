"""Deterministic randomness that does not depend on row order or on other speakers.

Each speaker gets its own generator seeded by (seed, crc32(speaker id), purpose),
and each file a random sort key from a keyed hash of its ID, so a speaker's
selection is the same whatever else is in the listing.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd


def speaker_rng(seed: int, spk: str, purpose: str) -> np.random.Generator:
    """A generator for one speaker and one purpose (e.g. 'val_split')."""
    return np.random.default_rng(
        [int(seed), zlib.crc32(spk.encode()), zlib.crc32(purpose.encode())]
    )


def file_keys(ids: pd.Series, seed: int, purpose: str) -> np.ndarray:
    """A uniform random uint64 per ID, fixed by (seed, purpose, ID)."""
    key = f"{int(seed) % 10**8:08d}{zlib.crc32(purpose.encode()) % 10**8:08d}"
    return pd.util.hash_array(ids.to_numpy(dtype=object), hash_key=key, categorize=False)
