"""Peak GPU memory and step rate of a wav2vec2-base-sized model at the study's batch.

    python benchmarks/wav2vec2_memory.py [--batch 100] [--steps 8]

A randomly initialised model of wav2vec2-base's architecture (lowres.models.tiny_wav2vec2,
``size="base"``: same memory and speed as the real checkpoint, no download) is trained
with gradient checkpointing at batch x 2 s, in fp16 and bf16, with the CNN frozen (the
study's default) and trainable (the ablation's "nothing frozen" / "freeze CNN only"
variants), the configurations whose memory decides the GPU class (24 GB in the study).
Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402

from lowres.data import loading as lowres_data  # noqa: E402
from lowres.io.hparams import load_hparams  # noqa: E402
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: this benchmark needs a CUDA device")
    print(f"{torch.cuda.get_device_name()}: wav2vec2-base (random init), batch {args.batch} x 2 s,"
          " gradient checkpointing")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = tt.write_corpus(tmp, 2 * args.batch, n_speakers=40)
        encoder = lowres_data.speaker_encoder(csv_path, tmp / "labels.txt")
        source = save_tiny_wav2vec2(tmp / "w2v2_base", "base")
        batch = next(iter(tt.our_loader(csv_path, encoder, args.batch, 0, 1)))
        for precision in ("fp16", "bf16"):
            for freeze_cnn in (True, False):
                hparams = load_hparams(tt.ROOT / "hparams/wav2vec2_tiny_few.yaml", {
                    "data_folder": str(tmp), "n_speakers": len(encoder),
                    "wav2vec2_source": str(source),
                    "completely_freeze_feature_extractor": freeze_cnn,
                })
                trainer = tt.Trainer(hparams, "cuda", precision)
                torch.cuda.reset_peak_memory_stats()
                rate = tt.model_rate(trainer, batch, args.steps)
                peak = torch.cuda.max_memory_allocated() / 2**30
                print(f"{precision} CNN {'frozen   ' if freeze_cnn else 'trainable'}: "
                      f"{rate:6.2f} steps/s, peak {peak:5.2f} GiB", flush=True)
                del trainer, hparams
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
