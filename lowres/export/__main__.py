"""``python -m lowres.export RUN (--out DIR | --onnx FILE) [--checkpoint best|last]``.

--out DIR    a SpeechBrain pretrained-model folder (hyperparams.yaml, tensors-only weights,
             label encoder, model card README.md) that speechbrain.inference.speaker's
             EncoderClassifier / SpeakerRecognition load; see lowres.export.speechbrain_folder.
--onnx FILE  the embedder with its front-end as ONNX (waveform [batch, samples] at 16 kHz in,
             embedding [batch, D] out); see lowres.export.onnx.

Both may be given. Each export is checked against lowres's own embeddings before it is
kept. Exit status: 0 written, 2 error (nothing written for the failed export; an output
path that cannot be written is refused before any export).
"""

from __future__ import annotations

import argparse
import sys

from lowres.export.run import ExportError
from lowres.io.outputs import check_output_file, check_output_folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lowres.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (train.py's --output_folder)")
    ap.add_argument("--out", help="SpeechBrain pretrained-model folder to write")
    ap.add_argument("--onnx", help="ONNX file to write (e.g. DIR/embedding_model.onnx)")
    ap.add_argument("--checkpoint", default="best", choices=("best", "last"))
    args = ap.parse_args(argv)
    if not args.out and not args.onnx:
        ap.error("give --out DIR and/or --onnx FILE")
    try:
        if args.out:  # OutputPathError (a ValueError) before any export
            check_output_folder(args.out, "--out")
        if args.onnx:
            check_output_file(args.onnx, "--onnx")
        if args.out:
            from lowres.export.speechbrain_folder import export_speechbrain_folder

            folder = export_speechbrain_folder(args.run, args.out, args.checkpoint)
            print(f"wrote the SpeechBrain folder {folder} (see {folder / 'README.md'})")
        if args.onnx:
            from lowres.export.onnx import export_onnx

            path, worst = export_onnx(args.run, args.onnx, args.checkpoint)
            print(f"wrote {path} (onnxruntime vs PyTorch: largest difference {worst:.1e})")
    except (ExportError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
