"""Are two recordings the same speaker?  ``python -m lowres.verify OUT a.wav b.wav``

Prints the cosine score of the two recordings under the run's best checkpoint
and the decision at the run's validation EER threshold (stored by eval.py /
train.py's evaluation in OUT/eval/<checkpoint>/results.json), then the
log-likelihood ratio of the score (calibrated on the same validation trials) and
the decision at the Bayes threshold for the prior --p_target (the prior
probability that a pair is the same speaker; equal costs of a miss and a false
alarm).  Its default 0.05 is the prior of the VoxSRC challenges' minDCF (2020 on),
the benchmark family of the VoxCeleb1 test lists, and results.json reports the
cost of exactly this decision as act_dcf_0.05 (act_dcf_0.01 for 0.01, the other
prior it reports).  CPU by default.

Output (S the cosine score, T the EER threshold, L = scale * S + offset)::

    score S
    same|different speaker (threshold T)
    llr L
    same|different speaker at p_target 0.05 (llr >= 2.944)

Any audio format soundfile reads; not 16 kHz -> resampled to 16 kHz, stereo
-> averaged to mono.  Exit status: 0 decided, 2 error (missing file, run
folder or threshold; the score is still printed when only the threshold is
missing).  A run evaluated before calibration existed has no LLR: the LLR
lines are left out with a note (re-run eval.py).
"""

from __future__ import annotations

import argparse
import sys

from lowres.scoring.calibration import bayes_threshold
from lowres.scoring.speaker_verifier import SpeakerVerifier


def _prior(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"p_target must be in (0, 1), got {text}")
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lowres.verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (train.py's --output_folder)")
    ap.add_argument("a", help="first recording")
    ap.add_argument("b", help="second recording")
    ap.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ap.add_argument("--threshold", type=float, default=None,
                    help="decision threshold (default: the run's validation EER threshold)")
    ap.add_argument("--p_target", type=_prior, default=0.05,
                    help="prior of 'same speaker' for the LLR decision (default 0.05)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        verifier = SpeakerVerifier.from_run(args.run, args.checkpoint, args.device)
        if args.threshold is not None:
            verifier.threshold = args.threshold
        score = verifier.score(args.a, args.b)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"score {score:.4f}")
    if verifier.threshold is None:
        print("error: the run has no validation EER threshold: run recipes/VoxCeleb/eval.py "
              f"--output_folder {args.run} (or pass --threshold)", file=sys.stderr)
        return 2
    same = score >= verifier.threshold
    print(f"{'same' if same else 'different'} speaker (threshold {verifier.threshold:.4f})")
    if verifier.calibration is None:
        print("note: the run's results.json has no score calibration (evaluated before it "
              "existed): re-run recipes/VoxCeleb/eval.py for an LLR", file=sys.stderr)
        return 0
    llr = float(verifier.calibration.llr(score))
    threshold = bayes_threshold(args.p_target)
    print(f"llr {llr:.3f}")
    print(f"{'same' if llr >= threshold else 'different'} speaker at p_target {args.p_target:g} "
          f"(llr >= {threshold:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
