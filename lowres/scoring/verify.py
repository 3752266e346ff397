"""Are two recordings the same speaker?  ``python -m lowres.verify OUT a.wav b.wav``

Prints the cosine score of the two recordings under the run's best checkpoint
and the decision at the run's validation EER threshold (stored by eval.py /
train.py's evaluation in OUT/eval/<checkpoint>/results.json).  CPU by default.
Any audio format soundfile reads; not 16 kHz -> resampled to 16 kHz, stereo
-> averaged to mono.  Exit status: 0 decided, 2 error (missing file, run
folder or threshold; the score is still printed when only the threshold is
missing).
"""

from __future__ import annotations

import argparse
import sys

from lowres.scoring.inference import SpeakerVerifier


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lowres.verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (train.py's --output_folder)")
    ap.add_argument("a", help="first recording")
    ap.add_argument("b", help="second recording")
    ap.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ap.add_argument("--threshold", type=float, default=None,
                    help="decision threshold (default: the run's validation EER threshold)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
