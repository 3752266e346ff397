"""What training-crop augmentation (lowres.data.augment) costs the loader, against the models.

    python benchmarks/augment_throughput.py [--batch 16] [--workers 2] [--device cpu]

Measures, at batch ``--batch`` x 2 s crops, on the synthetic MUSAN / RIRS_NOISES
stand-ins (prepare.synthetic.augment_sets, prepared with prepare.augment_sets; needs
espeak-ng) and random-noise training files of 4-12 s (benchmarks/train_throughput.py):

* one item, microseconds in the calling process (one core): the plain crop, each
  augmentation alone (probability 1) and ``all`` (probability 1, one of noise / music /
  babble / reverb at random, plus speed perturbation: the most a crop costs on average);
* loader items/s with ``--workers`` workers, plain and ``all`` (CPU side: what train.py
  does, per item in the workers);
* ``augment_side: device``: the loader's draws for ``all`` applied to a whole batch on
  ``--device`` in the training process (CropAugment.augment_batch, as train.py's Brain;
  the loader still reads the collection files), ms per batch
  (benchmarks/train_throughput.py --augment measures both sides against the models);
* model utterances/s (train_throughput.Trainer: forward, AAM loss, backward, Adam) and
  the augmented loader's lead over each model (the goal: >= 5x).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_throughput as tt  # noqa: E402

from lowres.data import augment as lowres_augment  # noqa: E402
from lowres.data import loading as lowres_data  # noqa: E402
from lowres.io.hparams import load_hparams, plain_values  # noqa: E402
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402
from prepare.augment_sets import prepare_augment_sets  # noqa: E402
from prepare.synthetic.augment_sets import generate_augment_sets  # noqa: E402

KINDS = ("speed", *lowres_augment.AUGMENTATIONS, "all")


def augment_values(base: dict, csv: Path, kind: str) -> dict:
    """The shared yaml's augmentation keys, with ``kind`` on at probability 1."""
    values = {**base, "augment_folder": str(csv), "augment_prob": 1.0,
              **{k: str(csv / Path(base[k]).name) for k in lowres_augment.CSV_KEYS.values()}}
    if kind in ("speed", "all"):
        values["speed_perturb"] = True
    for name in lowres_augment.AUGMENTATIONS:
        values[f"augment_{name}"] = kind in (name, "all")
    return values


def gpu_side_ms(augment, batch, device, repeats: int = 5) -> float:
    """``augment_side: device``: the batch's draws applied to it on ``device``."""
    wavs, lens = batch.sig
    wavs, lens = wavs.to(device), lens.to(device)
    augment.augment_batch(wavs, lens, batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        augment.augment_batch(wavs, lens, batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=4, help="timed steps per model")
    p.add_argument("--loader_batches", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--items", type=int, default=60, help="items timed per kind, in-process")
    p.add_argument("--models", nargs="+", default=["xvector", "ecapa", "wav2vec2"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    args = p.parse_args(argv)
    print(f"augmentation benchmark: batch {args.batch} x {tt.CROP:.0f} s, {args.workers} loader "
          f"workers, models on {args.device} ({args.precision}), torch threads "
          f"{torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = tt.write_corpus(tmp, args.files, n_speakers=40)
        encoder = lowres_data.speaker_encoder(csv_path, tmp / "labels.txt")
        generate_augment_sets(tmp / "sets", seed=0)
        prepare_augment_sets(tmp / "csv", tmp / "sets" / "musan", tmp / "sets" / "RIRS_NOISES")
        base = plain_values(ROOT / "hparams" / "xvector_tiny_few.yaml", {"data_folder": str(tmp)})
        augments = {k: lowres_augment.from_hparams(augment_values(base, tmp / "csv", k))
                    for k in KINDS}

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a loader worker
        fetch = {k: tt.item_us(tt.our_loader(csv_path, encoder, 1, 0, 1,
                                             augment=augments.get(k)).dataset,
                               lambda i: (i, i), n=args.items) for k in ("plain", *KINDS)}
        torch.set_num_threads(threads)
        print("one item (us, one core): " + " | ".join(f"{k} {v:.0f}" for k, v in fetch.items()))

        n = args.loader_batches
        plain = tt.loader_rate(tt.our_loader(csv_path, encoder, args.batch, args.workers, n), n)
        augmented = tt.loader_rate(tt.our_loader(csv_path, encoder, args.batch, args.workers, n,
                                                 augment=augments["all"]), n)
        print(f"loader items/s ({args.workers} workers): plain {plain:.1f} | all (CPU side) "
              f"{augmented:.1f}")
        on_device = lowres_augment.from_hparams(
            {**augment_values(base, tmp / "csv", "all"), "augment_side": "device"})
        ms = gpu_side_ms(on_device, next(iter(tt.our_loader(
            csv_path, encoder, args.batch, 0, 1, augment=on_device))), args.device)
        print(f"augment_side device on {args.device}: {ms:.1f} ms per batch of {args.batch} "
              f"({args.batch / ms * 1e3:.0f} items/s, in the training process)")
        batch = next(iter(tt.our_loader(csv_path, encoder, args.batch, 0, 1)))

        print(f"{'model':10s} {'utt/s':>8s} {'plain/model':>12s} {'all/model':>10s}")
        for name in args.models:
            overrides = {"data_folder": str(tmp), "n_speakers": len(encoder)}
            if name == "wav2vec2":
                overrides["wav2vec2_source"] = str(save_tiny_wav2vec2(tmp / "w2v2", "tiny"))
            trainer = tt.Trainer(load_hparams(ROOT / "hparams" / f"{name}_tiny_few.yaml",
                                              overrides), args.device, args.precision)
            utt = tt.model_rate(trainer, batch, args.steps) * args.batch
            print(f"{name:10s} {utt:8.1f} {plain / utt:11.1f}x {augmented / utt:9.1f}x",
                  flush=True)
            del trainer


if __name__ == "__main__":
    main()
