"""VoxCeleb1-style trial lists for the synthetic corpus (O, E and H).

A trial is `label path1 path2` (label 1 = same speaker). Lists are balanced:
target pairs are cross-session pairs spread round-robin over speakers, and as
many non-target pairs, one per enrolment file in turn, whose partner speaker
passes the list's constraint (O and E: any other speaker; H: same gender and
same nationality, as in VoxCeleb1-H).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrialSpeaker:
    spk_id: str
    gender: str
    nationality: str
    sessions: dict  # session -> list of paths "spk/session/utt.wav"


def _target_pairs(spk: TrialSpeaker) -> list[tuple[str, str]]:
    sessions = sorted(spk.sessions)
    pairs = []
    for i, a in enumerate(sessions):
        for b in sessions[i + 1:]:
            pairs += [(p, q) for p in spk.sessions[a] for q in spk.sessions[b]]
    return pairs


def make_trials(speakers: Sequence[TrialSpeaker], rng: np.random.Generator,
                trials_per_file: int = 8,
                same_group: Callable[[TrialSpeaker, TrialSpeaker], bool] | None = None,
                ) -> list[tuple[int, str, str]]:
    """Balanced trials over `speakers`; about `trials_per_file` per file."""
    speakers = sorted(speakers, key=lambda s: s.spk_id)
    files = [(p, s) for s in speakers for sess in sorted(s.sessions) for p in s.sessions[sess]]
    wanted = max(1, trials_per_file * len(files) // 2)
    # Targets: round-robin over speakers, random cross-session pairs of each.
    pools = []
    for spk in speakers:
        pairs = _target_pairs(spk)
        pools.append([pairs[i] for i in rng.permutation(len(pairs))])
    targets, depth = [], 0
    while len(targets) < wanted and any(depth < len(pool) for pool in pools):
        for pool in pools:
            if depth < len(pool) and len(targets) < wanted:
                a, b = pool[depth]
                targets.append((1, a, b) if rng.random() < 0.5 else (1, b, a))
        depth += 1
    # Non-targets: each file in turn (shuffled) enrols against a random allowed speaker.
    allowed = {
        s.spk_id: [o for o in speakers
                   if o.spk_id != s.spk_id and (same_group is None or same_group(s, o))]
        for s in speakers
    }
    order = [files[i] for i in rng.permutation(len(files))]
    order = [(p, s) for p, s in order if allowed[s.spk_id]]
    nontargets, seen, attempts = [], set(), 0
    while order and len(nontargets) < len(targets) and attempts < 20 * len(targets) + 100:
        path, spk = order[attempts % len(order)]
        attempts += 1
        other = allowed[spk.spk_id][int(rng.integers(len(allowed[spk.spk_id])))]
        other_files = [p for sess in sorted(other.sessions) for p in other.sessions[sess]]
        partner = other_files[int(rng.integers(len(other_files)))]
        key = tuple(sorted((path, partner)))
        if key not in seen:
            seen.add(key)
            nontargets.append((0, path, partner))
    trials = targets[: len(nontargets)] + nontargets if nontargets else targets
    return sorted(trials, key=lambda t: (t[1], t[2]))


def same_gender_and_nationality(a: TrialSpeaker, b: TrialSpeaker) -> bool:
    return a.gender == b.gender and a.nationality == b.nationality
