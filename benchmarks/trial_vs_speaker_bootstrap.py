"""How much narrower a trial-level bootstrap is than the speaker-level one, on a run's scores.

Resampling trials treats every trial as independent; a test list's trials share few
speakers, so that interval only measures the noise among the trials of the same people
(docs/intervals.md). This prints both 95 % EER intervals of one run's score file and the
ratio of their widths, with the same number of draws.

    python benchmarks/trial_vs_speaker_bootstrap.py RUN [--test_set extended] [--draws 1000]
"""

import argparse

import numpy as np

from lowres.io.run_folder import eval_folder, scores_name
from lowres.scoring.bootstrap import percentile_interval, speaker_bootstrap
from lowres.scoring.metrics import eer
from lowres.scoring.trials import read_scores


def trial_bootstrap(scores: np.ndarray, labels: np.ndarray, draws: int, level: float,
                    seed: int) -> tuple[float, float]:
    """The percentile interval of the EER over ``draws`` resamplings of the trials."""
    rng = np.random.default_rng(seed)
    values = np.array([eer(scores[i], labels[i]).eer
                       for i in (rng.integers(0, scores.size, scores.size) for _ in range(draws))])
    return percentile_interval(values, level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder")
    parser.add_argument("--test_set", default="extended")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = read_scores(eval_folder(args.run, args.checkpoint) / scores_name(args.test_set))
    scores, labels = frame.score.to_numpy(), frame.label.to_numpy().astype(bool)
    point = eer(scores, labels).eer
    result = speaker_bootstrap(scores, labels, frame.path1.to_numpy(), frame.path2.to_numpy(),
                               draws=args.draws, level=args.level, seed=args.seed,
                               metrics=("eer",))
    speaker = result.intervals["eer"]
    trial = trial_bootstrap(scores, labels, args.draws, args.level, args.seed)
    print(f"{args.run} {args.test_set}: {len(frame)} trials, {result.speakers} speakers, "
          f"EER {100 * point:.2f} %")
    print(f"  speaker bootstrap [{100 * speaker.low:.2f}, {100 * speaker.high:.2f}] "
          f"width {100 * (speaker.high - speaker.low):.2f} points")
    print(f"  trial bootstrap   [{100 * trial[0]:.2f}, {100 * trial[1]:.2f}] "
          f"width {100 * (trial[1] - trial[0]):.2f} points")
    print(f"  trial / speaker width: {(trial[1] - trial[0]) / (speaker.high - speaker.low):.2f}")


if __name__ == "__main__":
    main()
