"""Are two recordings the same speaker?  ``python -m lowres.verify OUT a.wav b.wav``

Prints the cosine score of the two recordings under the run's best checkpoint, its
log-likelihood ratio (the score calibrated on the run's validation trials, stored by
eval.py / train.py's evaluation in OUT/eval/<checkpoint>/results.json), the threshold
and one decision: by default the calibrated one, same speaker when the LLR reaches the
Bayes threshold of the prior --p_target (the prior probability that a pair is the same
speaker; equal costs of a miss and a false alarm), shown as the cosine score it
stands for.  The default 0.05 is the prior of the VoxSRC challenges' minDCF (2020 on),
the benchmark family of the VoxCeleb1 test lists, and results.json reports the cost of
exactly this decision as act_dcf_0.05.  --eer_threshold decides at the run's validation
EER threshold instead, --threshold T at T.  An exported SpeechBrain folder
(python -m lowres.export) stores the default decision's threshold.  CPU by default.

Output (S the cosine score, L = scale * S + offset, T the threshold on S)::

    score S
    llr L
    threshold T (calibrated at p_target 0.05: LLR >= 2.944)
    same|different speaker

Any audio format soundfile reads; not 16 kHz -> resampled to 16 kHz, stereo
-> averaged to mono.  Exit status: 0 decided, 2 error (missing file, run
folder or threshold; the score is still printed when only the threshold is
missing).  A run evaluated before calibration existed has no LLR: the llr line is left
out and the decision falls back to the EER threshold, with a note (re-run eval.py).
"""

from __future__ import annotations

import argparse
import sys

from lowres.scoring.speaker_verifier import (
    DEFAULT_P_TARGET,
    SpeakerVerifier,
    Threshold,
    run_threshold,
)


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
    ap.add_argument("--p_target", type=_prior, default=DEFAULT_P_TARGET,
                    help=f"prior of 'same speaker' of the calibrated decision (default "
                    f"{DEFAULT_P_TARGET:g})")
    rule = ap.add_mutually_exclusive_group()
    rule.add_argument("--eer_threshold", action="store_true",
                      help="decide at the run's validation EER threshold instead")
    rule.add_argument("--threshold", type=float, default=None,
                      help="decide at this threshold on the cosine score instead")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        verifier = SpeakerVerifier.from_run(args.run, args.checkpoint, args.device)
        score = verifier.score(args.a, args.b)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"score {score:.4f}")
    if verifier.calibration is not None:
        print(f"llr {float(verifier.calibration.llr(score)):.3f}")
    if args.threshold is not None:
        threshold = Threshold(args.threshold, "given with --threshold")
    else:
        threshold = run_threshold(verifier.threshold, verifier.calibration,
                                  None if args.eer_threshold else args.p_target)
    if threshold is None:
        print("error: the run has no validation EER threshold: run recipes/VoxCeleb/eval.py "
              f"--output_folder {args.run} (or pass --threshold)", file=sys.stderr)
        return 2
    if threshold.fallback:
        print(f"note: {threshold.fallback}: deciding at the EER threshold instead",
              file=sys.stderr)
    print(f"threshold {threshold.score:.4f} ({threshold.rule})")
    print(f"{'same' if score >= threshold.score else 'different'} speaker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
