"""Time lowres.scoring.metrics (EER, minDCF) against speechbrain.utils.metric_stats.EER.

Sizes are the trial counts of VoxCeleb1-O (37,611), -E (579,818) and a 5M
list.  SpeechBrain's EER loops over ~2n thresholds with an O(n) pass each, so
it only runs up to --sb_max trials.

    python benchmarks/metrics.py [--sizes 37611,579818,5000000] [--sb_max 40000]
"""

import argparse
import time

import numpy as np
import torch

from lowres.scoring.metrics import eer, min_dcf


def trials(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-like float32 scores (so some ties), half targets."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = (rng.normal(0.1, 0.1, n) + 0.4 * labels).astype(np.float32)
    return scores, labels


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="37611,579818,5000000")
    ap.add_argument("--sb_max", type=int, default=40000, help="largest size to run SpeechBrain on")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from speechbrain.utils.metric_stats import EER as sb_eer

    print(f"{'trials':>9} {'eer s':>8} {'minDCF s':>9} {'sb EER s':>9} {'EER':>8} {'sb EER':>8}")
    for n in map(int, args.sizes.split(",")):
        s, y = trials(n)
        res, t_eer = timed(eer, s, y)
        _, t_dcf = timed(min_dcf, s, y, 0.01)
        if n <= args.sb_max:
            st = torch.from_numpy(s)
            (sb_val, _), t_sb = timed(sb_eer, st[y], st[~y])
            sb_txt, sb_val_txt = f"{t_sb:9.2f}", f"{sb_val:8.5f}"
        else:
            sb_txt, sb_val_txt = f"{'skipped':>9}", f"{'-':>8}"
        print(f"{n:>9} {t_eer:8.3f} {t_dcf:9.3f} {sb_txt} {res.eer:8.5f} {sb_val_txt}", flush=True)


if __name__ == "__main__":
    main()
