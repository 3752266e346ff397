"""CPU time of embedding a recording: ONNX (onnxruntime) next to PyTorch, per model.

    python benchmarks/onnx_speed.py [--models xvector ecapa wav2vec2] [--base]
        [--seconds 3 10] [--batch 1 8] [--threads 1] [--repeats 10]

Each embedder is built from the recipe's hparams with random weights (x-vector; ECAPA-TDNN
with C=512 as in the study; wav2vec2: the tiny random local model of the tests, ``--base``
adds a wav2vec2-base-sized one) and exported with lowres.export.onnx, the graph that
``python -m lowres.export RUN --onnx FILE`` writes. Input: random audio of ``--seconds`` per
utterance in batches of ``--batch`` (equal lengths). Time per call: the median of
``--repeats`` calls after two warm-up calls; PyTorch is lowres's own embedder in eval mode
under ``torch.no_grad`` (as SpeakerVerifier runs it), onnxruntime uses its CPU provider;
both get ``--threads`` intra-op threads. Also prints the largest embedding difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lowres.export.onnx import (  # noqa: E402
    exportable_embedder,
    onnx_embed,
    onnx_session,
    write_onnx,
)
from lowres.io.audio import SAMPLE_RATE  # noqa: E402
from lowres.io.hparams import load_hparams  # noqa: E402
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402

CELLS = {"xvector": "xvector_tiny_few.yaml", "ecapa": "ecapa_tiny_few.yaml",
         "wav2vec2": "wav2vec2_tiny_few.yaml", "wav2vec2-base": "wav2vec2_tiny_few.yaml"}


def median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def build(name: str, tmp: Path) -> torch.nn.Module:
    overrides = {"data_folder": str(tmp), "n_speakers": 10}
    if name.startswith("wav2vec2"):
        size = "base" if name == "wav2vec2-base" else "tiny"
        overrides["wav2vec2_source"] = str(save_tiny_wav2vec2(tmp / name, size))
    return load_hparams(ROOT / "hparams" / CELLS[name], overrides)["embedder"].eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["xvector", "ecapa", "wav2vec2"],
                    choices=["xvector", "ecapa", "wav2vec2"])
    ap.add_argument("--base", action="store_true", help="also a wav2vec2-base-sized model")
    ap.add_argument("--seconds", nargs="+", type=float, default=[3.0, 10.0])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    models = args.models + (["wav2vec2-base"] if args.base else [])
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.threads} thread(s), median of {args.repeats} calls")
    print(f"{'model':14s} {'batch':>5s} {'seconds':>7s} {'PyTorch ms':>10s} {'ONNX ms':>8s} "
          f"{'speed-up':>8s} {'max diff':>9s}")
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in models:
            embedder = build(name, tmp)
            path = tmp / f"{name}.onnx"
            write_onnx(exportable_embedder(embedder), path)
            session = onnx_session(path, args.threads)
            for batch in args.batch:
                for seconds in args.seconds:
                    wavs = 0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=gen)
                    lens = torch.ones(batch)
                    with torch.no_grad():
                        ours = embedder(wavs, lens)
                        torch_ms = median_ms(partial(embedder, wavs, lens), args.repeats)
                    diff = float((onnx_embed(session, wavs) - ours).abs().max())
                    onnx_ms = median_ms(partial(onnx_embed, session, wavs), args.repeats)
                    print(f"{name:14s} {batch:5d} {seconds:7.1f} {torch_ms:10.1f} "
                          f"{onnx_ms:8.1f} {torch_ms / onnx_ms:7.2f}x {diff:9.1e}")


if __name__ == "__main__":
    main()
