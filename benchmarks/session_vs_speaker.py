"""Does a trained run recognise speakers or recording sessions? Same- vs cross-session EER.

    python benchmarks/session_vs_speaker.py RUN_FOLDER [RUN_FOLDER ...]
        [--test extended] [--checkpoint best|last] [--nontarget_fraction 0.05]

For every run, embeds the files of one test set's manifest (<manifest_folder>/test/<test>.csv
of the run) one at a time and prints two EERs against the same same-gender non-target
pairs: target pairs from the *same* session (same speaker, same channel) and from
*different* sessions (same speaker, other channel). A model that has learnt the channel
rather than the voice scores the first well and the second near 50 % (the VoxCeleb1 trial
lists, real and synthetic, hold only cross-session targets). A run folder without a
checkpoint (e.g. the demo's ``untrained`` one, which has one at step 0) is an error.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lowres.io.lists import read_manifest, test_set_files  # noqa: E402
from lowres.scoring.batch_embedding import extract_embeddings  # noqa: E402
from lowres.scoring.checkpoints import (  # noqa: E402
    load_checkpoint,
    load_run_hparams,
)
from lowres.scoring.metrics import eer  # noqa: E402


def trial_pairs(files, nontarget_fraction: float, seed: int = 0):
    """(same-session targets, cross-session targets, same-gender non-targets) as index pairs."""
    rng = np.random.default_rng(seed)
    spk, sess, gender = (files[c].to_numpy() for c in ("spk_id", "session", "gender"))
    same, cross, non = [], [], []
    for i, j in itertools.combinations(range(len(files)), 2):
        if spk[i] == spk[j]:
            (same if sess[i] == sess[j] else cross).append((i, j))
        elif gender[i] == gender[j] and rng.random() < nontarget_fraction:
            non.append((i, j))
    return np.array(same), np.array(cross), np.array(non)


def pair_eer(emb: np.ndarray, targets: np.ndarray, nontargets: np.ndarray) -> float:
    scores = [np.einsum("ij,ij->i", emb[p[:, 0]], emb[p[:, 1]]) for p in (targets, nontargets)]
    labels = np.r_[np.ones(len(targets)), np.zeros(len(nontargets))]
    return eer(np.concatenate(scores), labels).eer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--test", default="extended", choices=("original", "extended", "hard"))
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--nontarget_fraction", type=float, default=0.05,
                        help="share of the same-gender different-speaker pairs scored")
    args = parser.parse_args(argv)
    print(f"{'run':60s} {'same-session EER %':>18s} {'cross-session EER %':>19s}")
    for run in args.runs:
        hparams = load_run_hparams(run)
        ckpt = "last" if hparams.get("max_steps") == 0 else args.checkpoint
        load_checkpoint(hparams, ckpt)
        files = read_manifest(test_set_files(hparams["manifest_folder"], args.test)[0])
        for column in ("session", "gender"):
            if column not in files.columns:
                sys.exit(f"error: {run}: the {args.test} manifest has no {column!r} column")
        same, cross, non = trial_pairs(files, args.nontarget_fraction)
        emb = extract_embeddings(hparams["embedder"], files.wav.tolist(), progress=False)
        emb = torch.nn.functional.normalize(emb, dim=1).numpy()
        print(f"{str(run):60s} {100 * pair_eer(emb, same, non):18.2f} "
              f"{100 * pair_eer(emb, cross, non):19.2f}   ({len(same)} / {len(cross)} targets, "
              f"{len(non)} non-targets)", flush=True)


if __name__ == "__main__":
    main()
