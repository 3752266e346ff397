"""Time the speaker-bootstrap intervals (lowres.scoring.bootstrap) on VoxCeleb1-sized lists.

Sizes are those of VoxCeleb1-E (579,818 trials, 1,251 speakers) and VoxCeleb1-O
(37,611 trials, 40 speakers); scores are synthetic with per-speaker effects, written
with 6 decimals like score files.  Targets on 2 cores: under 15 s and under 1 s for
1,000 draws of EER and minDCF.  Cllr (of a fixed calibration) and min Cllr (the hull of
each draw's curve) are timed apart, then all of them in one call, as the evaluation asks.

    python benchmarks/bootstrap_intervals.py [--draws 1000]
"""

import argparse
import time

import numpy as np

from lowres.scoring.bootstrap import speaker_bootstrap
from lowres.scoring.calibration import Calibration
from lowres.scoring.metrics import eer

SIZES = {"VoxCeleb1-E": (579_818, 1_251), "VoxCeleb1-O": (37_611, 40)}


def trials(n: int, speakers: int, seed: int = 0):
    """Half targets; each speaker shifts its target and its non-target scores."""
    rng = np.random.default_rng(seed)
    tar_shift = rng.normal(0.0, 0.05, speakers)
    non_shift = rng.normal(0.0, 0.03, speakers)
    labels = rng.random(n) < 0.5
    a = rng.integers(0, speakers, n)
    b = (a + rng.integers(1, speakers, n)) % speakers  # never a itself
    b = np.where(labels, a, b)
    scores = np.where(labels, 0.5 + tar_shift[a], 0.1 + non_shift[a] + non_shift[b])
    scores = np.round(scores + rng.normal(0.0, 0.1, n), 6)
    paths1 = [f"id{x:05d}/v/00001.wav" for x in a]
    paths2 = [f"id{x:05d}/v/00002.wav" for x in b]
    return scores, labels, paths1, paths2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args()
    print(f"{'list':<12} {'trials':>8} {'speakers':>8} {'EER+DCF s':>9} {'Cllr s':>7} "
          f"{'minCllr s':>9} {'all s':>6} {'EER':>7} {'95% interval':>17} "
          f"{'min Cllr interval':>17}")
    calibration = Calibration(10.0, -3.0)
    for name, (n, speakers) in SIZES.items():
        s, y, p1, p2 = trials(n, speakers)
        seconds, res = [], {}
        for metrics in (["eer", "min_dcf_0.01", "min_dcf_0.05"], ["cllr"], ["min_cllr"],
                        None):
            t0 = time.perf_counter()
            res.update(speaker_bootstrap(s, y, p1, p2, draws=args.draws, metrics=metrics,
                                         calibration=calibration).intervals)
            seconds.append(time.perf_counter() - t0)
        low, high = res["eer"]
        c_low, c_high = res["min_cllr"]
        print(f"{name:<12} {n:>8} {speakers:>8} {seconds[0]:9.2f} {seconds[1]:7.2f} "
              f"{seconds[2]:9.2f} {seconds[3]:6.2f} {eer(s, y).eer:7.4f} [{low:.4f}, {high:.4f}] "
              f"[{c_low:.4f}, {c_high:.4f}]", flush=True)


if __name__ == "__main__":
    main()
