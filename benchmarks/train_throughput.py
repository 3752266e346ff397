"""Training throughput on CPU: the data loader alone, each model alone, and both together.

    python benchmarks/train_throughput.py [--batch 16] [--steps 6] [--workers 2] [--base]
        [--models xvector ecapa wav2vec2] [--input_normalisation utterance|crop]
        [--compile [--compile_mode MODE]] [--fused] [--no_gradient_checkpointing]
        [--augment loader device]
    python benchmarks/train_throughput.py --adaptation_methods all|METHOD ... [--base]
        [--batch, --steps, --device, --precision and the step-time switches as above]

Measures, at batch ``--batch`` x 2 s crops:

* loader items/s: lowres.data.loading (one seeded crop read from disk with soundfile
  start/stop), also with the crop normalised by its file's statistics (wav2vec2's
  ``input_normalisation: utterance``, the default: manifest columns from prepare.wav_stats,
  computed here first), and two stock SpeechBrain VoxCeleb-recipe-style pipelines: the
  whole file read with
  ``speechbrain.dataio.dataio.read_audio`` then cropped with ``random.randint``, and the
  recipe's own partial read (``frame_offset`` / ``num_frames``; here through
  ``read_audio({"file", "start", "stop"})`` because torchaudio 2.9's ``load`` needs
  torchcodec);
* model steps/s and utterances/s (forward, AAM loss, backward, Adam) on a preloaded batch,
  for x-vector, ECAPA-TDNN and wav2vec2 (a random tiny local model; ``--base`` adds a
  random wav2vec2-base-sized one), fp32, whole model training;
* the full loop (loader feeding the model) with our loader and with the stock full-read
  loader, steps/s (interleaved, best of two each).

The step-time switches of train.py (a GPU's speed-ups), off by default as there:
``--compile`` is ``compile_embedder`` (torch.compile of the embedder, ``--compile_mode``,
static shapes as SpeechBrain's Brain._compile), ``--fused`` is ``fused_optimizer`` (Adam's
fused kernel), ``--no_gradient_checkpointing`` is wav2vec2's ``gradient_checkpointing:
false``. A compiled model compiles in its warm-up step, which is not timed.

``--augment SIDE ...`` also measures the training-crop augmentation (lowres.data.augment)
of the modern grid (hparams/overrides/augment.yaml: noise, music, babble or reverberation
on a crop with probability ``augment_prob``, speed perturbation; speakers at other speeds
are not made new classes here, which changes labels only) with ``augment_side`` SIDE:
``loader`` (per crop in the loader workers) and / or ``device`` (the loader draws and
reads, the model step applies them on ``--device``, timed within the step). It prints the
augmented loader's items/s per side and, per model, the step rate with the device side's
work in it, each side's loader/model (the augmented loader's lead) and full loop. The
collections are random-noise files and decaying-noise impulse responses of 0.3-1 s (only
I/O and compute matter), so no MUSAN / RIRS_NOISES nor espeak-ng is needed.

``--adaptation_methods METHOD ...`` (or ``all``) measures instead, on a preloaded batch, the
wav2vec2 (the tiny one; ``--base``: the base-sized one) trained as each method of the
adaptation grids (hparams/grids/adaptation.yaml, each method's ``values`` over the
recipe: study = the whole backbone fine-tuned under the last layer's mean, frozen_mhfa,
lora_mhfa, adapter_mhfa, lora_mean), the backbone as it trains after the freeze
schedule's frozen steps. It prints per method the parameters that train (as train.py's
parameters.json counts them) and the model's, steps/s, utterances/s and the peak memory:
``torch.cuda.max_memory_allocated`` on a GPU, ``n/a`` on the CPU (the process's peak RSS
cannot be reset between methods). The loader and the full loop are the same for every
method and not measured there.

Goals: our loader supplies at least 5x the utterances/s the model consumes (wav2vec2:
the loader as it trains, i.e. normalising with the file statistics under ``utterance``),
and our full loop is not slower than the stock one. The audio is random noise written as 16-bit
wav files of 4-12 s (VoxCeleb2 averages ~8 s), so only I/O and compute are measured.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import yaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataio import read_audio
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import provides, takes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lowres.data import augment as lowres_augment  # noqa: E402
from lowres.data import loading as lowres_data  # noqa: E402
from lowres.io.audio import SAMPLE_RATE as SR  # noqa: E402
from lowres.io.hparams import load_hparams, plain_values  # noqa: E402
from lowres.io.lists import manifest_items, read_manifest, write_manifest  # noqa: E402
from lowres.models.freeze import apply_freeze_schedule  # noqa: E402
from lowres.models.ssl_adaptation import parameter_counts  # noqa: E402
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402
from lowres.study.grids.definitions import ADAPTATION_METHODS, adaptation_methods  # noqa: E402
from prepare.augment_sets import collection_frame  # noqa: E402
from prepare.wav_stats import add_wav_stats  # noqa: E402

CROP = 2.0
PREFETCH = 2  # DataLoader's default prefetch_factor, named: the timings skip its burst


def write_corpus(folder: Path, n_files: int, n_speakers: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_files):
        spk = f"id{i % n_speakers:05d}"
        seconds = float(rng.uniform(4, 12))
        wav = folder / f"{spk}_{i:05d}.wav"
        sf.write(wav, (rng.standard_normal(int(seconds * SR)) * 3000).astype(np.int16), SR,
                 subtype="PCM_16")
        rows.append({"ID": f"{spk}/s{i}/{i:05d}", "duration": round(seconds, 3), "wav": str(wav),
                     "spk_id": spk, "session": f"s{i}", "gender": "m"})
    path = folder / "train.csv"
    write_manifest(path, pd.DataFrame(rows))
    return path


def write_collections(folder: Path, n_files: int = 20, seed: int = 1) -> dict[str, str]:
    """Random-noise stand-ins of the prepared MUSAN / RIRS_NOISES CSVs (written by
    prepare.augment_sets' own code): the yaml's ``*_csv`` keys pointing at them."""
    rng = np.random.default_rng(seed)
    keys = {}
    for name, key in (("noise", "noise_csv"), ("music", "music_csv"), ("speech", "babble_csv"),
                      ("rirs", "rir_csv")):
        files = []
        for i in range(n_files):
            wav = folder / f"{name}-{i:03d}.wav"
            if name == "rirs":  # a direct path, then an exponentially decaying tail
                frames = int(rng.uniform(0.3, 1.0) * SR)
                sig = rng.standard_normal(frames) * np.exp(-np.arange(frames) / (0.05 * SR))
                sig[0] = 4.0
                sig = sig / np.abs(sig).max() * 0.9
            else:
                sig = rng.standard_normal(int(rng.uniform(3, 10) * SR)) * 0.1
            sf.write(wav, sig.astype(np.float32), SR, subtype="FLOAT")
            files.append(wav)
        frame = collection_frame(folder, files, mono=name != "rirs", desc=f"{name} headers")
        frame.to_csv(folder / f"{name}.csv", index=False)
        keys[key] = str(folder / f"{name}.csv")
    return keys


def augmentations(folder: Path, sides) -> dict[str, lowres_augment.CropAugment]:
    """Per side, the modern grid's augmentation (hparams/overrides/augment.yaml over the
    shared yaml) on the collections of :func:`write_collections`."""
    if not sides:
        return {}
    folder.mkdir()
    modern = yaml.safe_load((ROOT / "hparams" / "overrides" / "augment.yaml").read_text())
    values = plain_values(ROOT / "hparams" / "xvector_tiny_few.yaml", {
        "data_folder": "/data", **modern, **write_collections(folder),
        "speed_new_speakers": False})  # new classes change the labels only
    return {side: lowres_augment.from_hparams({**values, "augment_side": side})
            for side in sides}


def untimed_batches(workers: int) -> int:
    """Batches the timings skip: the first (worker start-up) and the ``PREFETCH`` per worker
    made at once with it. Timed, that burst's rate grows with the workers, not with the
    rate the loader keeps up."""
    return 1 + workers * PREFETCH


def timed_loader(ds, sampler, batch: int, workers: int):
    """The benchmark's DataLoader over ``ds``: padded batches, ``PREFETCH`` per worker."""
    return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True,
                                       num_workers=workers, collate_fn=PaddedBatch,
                                       prefetch_factor=PREFETCH if workers else None)


def our_loader(csv_path, encoder, batch, workers, steps, normalise=False, augment=None):
    """lowres.data.loading's training loader with enough batches to time ``steps``."""
    ds = lowres_data.train_dataset(csv_path, encoder, CROP, seed=0, normalise=normalise,
                                   augment=augment)
    sampler = lowres_data.StepBudgetSampler(
        len(ds), [batch * (untimed_batches(workers) + steps)], seed=0)
    return timed_loader(ds, sampler, batch, workers)


def stock_loader(csv_path, encoder, batch, workers, partial: bool, steps: int = 1):
    """SpeechBrain VoxCeleb recipe style: random crop in the audio pipeline, shuffled
    epochs (as many as timing ``steps`` needs)."""
    data = manifest_items(read_manifest(csv_path))
    crop = int(CROP * SR)

    @takes("wav", "duration")
    @provides("sig")
    def audio_pipeline(wav, duration):
        if partial:  # the recipe: frame_offset / num_frames read of the chunk
            start = random.randint(0, int(duration * SR) - crop)
            return read_audio({"file": wav, "start": start, "stop": start + crop})
        sig = read_audio(wav)  # whole file, then crop
        start = random.randint(0, len(sig) - crop)
        return sig[start:start + crop]

    @takes("spk_id")
    @provides("spk_id_encoded")
    def label_pipeline(spk_id):
        return torch.LongTensor([encoder.lab2ind[spk_id]])

    ds = DynamicItemDataset(data, dynamic_items=[audio_pipeline, label_pipeline],
                            output_keys=["id", "sig", "spk_id_encoded"])
    sampler = torch.utils.data.RandomSampler(
        ds, num_samples=batch * (untimed_batches(workers) + steps))
    return timed_loader(ds, sampler, batch, workers)


def loader_rate(loader, max_batches):
    """Items/s the loader keeps up, after its start-up and burst (untimed_batches)."""
    it = iter(loader)
    for _ in range(untimed_batches(loader.num_workers)):
        next(it)
    t0, n = time.perf_counter(), 0
    for i, batch in enumerate(it):
        n += len(batch.id)
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def item_us(dataset, key, n=300):
    """Microseconds to produce one item in the calling process (reading + pipeline)."""
    dataset[key(0)]
    t0 = time.perf_counter()
    for i in range(n):
        dataset[key(i % len(dataset))]
    return (time.perf_counter() - t0) / n * 1e6


class Trainer:
    """One optimiser step of embedder + cosine classifier + AAM loss (what train.py does)."""

    def __init__(self, hparams, device="cpu", precision="fp32", normalised=False,
                 compile_mode=None, fused=False):
        self.device = torch.device(device)
        # utterance normalisation: the loader normalised the crops (train.py does the same)
        self.kwargs = {"normalised": True} if normalised else {}
        self.embedder = hparams["embedder"].to(self.device)
        self.classifier = hparams["classifier"].to(self.device)
        self.loss = hparams["loss"]
        # worst case: the backbone trains (unless its adaptation never lets it)
        apply_freeze_schedule(self.embedder, 0, initially_frozen=False, num_frozen_steps=None)
        self.embedder.train()
        params = [*self.embedder.parameters(), *self.classifier.parameters()]
        self.opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-4,
                                    fused=fused or None)
        # as Brain._compile with compile_embedder (dynamic=False: SpeechBrain's default)
        self.forward = self.embedder if compile_mode is None else torch.compile(
            self.embedder, mode=compile_mode, dynamic=False)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)
        fp16_cuda = precision == "fp16" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16_cuda)
        self.device_augment = None  # augment_side device: CropAugment.augment_batch, timed

    def step(self, batch):
        wavs, lens = batch.sig
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        if self.device_augment is not None:  # as train.py's Brain, before the embedder
            wavs = self.device_augment(wavs, lens, batch)
        with self.autocast:
            emb = self.forward(wavs, lens, **self.kwargs)
            logits = self.classifier(emb.unsqueeze(1)).float()
        loss = self.loss(logits, batch.spk_id_encoded.data.to(self.device))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def model_rate(trainer, batch, steps):
    trainer.step(batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step(batch)
    return steps / (time.perf_counter() - t0)


def loop_rate(trainer, loader, steps):
    """Steps/s of the model fed by the loader, after the steps that use up the loader's
    start-up burst (untimed_batches): then a slower loader holds the model back."""
    it = iter(loader)
    for _ in range(untimed_batches(loader.num_workers)):  # warm-up, worker start-up
        trainer.step(next(it))
    t0, n = time.perf_counter(), 0
    for batch in it:
        trainer.step(batch)
        n += 1
        if n >= steps:
            break
    return n / (time.perf_counter() - t0)


def adaptation_rates(args, tmp: Path, csv_path: Path, encoder) -> None:
    """Print, per method of ``args.adaptation_methods``, the parameters that train and the
    model's, steps/s, utterances/s and peak memory of the wav2vec2 adapted that way."""
    values = {name: spec["values"] for name, spec in adaptation_methods().items()}
    names = ADAPTATION_METHODS if "all" in args.adaptation_methods else \
        tuple(dict.fromkeys(args.adaptation_methods))
    size = "base" if args.base else "tiny"
    source = save_tiny_wav2vec2(tmp / f"w2v2_{size}", size)
    normalise = args.input_normalisation == "utterance"
    batch = next(iter(our_loader(csv_path, encoder, args.batch, 0, 1, normalise)))
    cuda = args.device.startswith("cuda")
    print(f"adaptation methods (hparams/grids/adaptation.yaml) of wav2vec2-{size}, "
          f"{args.steps} timed steps each; peak memory: "
          f"{'torch.cuda.max_memory_allocated' if cuda else 'n/a on the CPU'}")
    print(f"{'method':14s} {'trainable':>12s} {'total':>12s} {'steps/s':>8s} {'utt/s':>8s} "
          f"{'peak GiB':>9s}")
    for name in names:
        overrides = {"data_folder": str(tmp), "n_speakers": len(encoder),
                     "wav2vec2_source": str(source),
                     "gradient_checkpointing": not args.no_gradient_checkpointing,
                     **values[name]}
        trainer = Trainer(load_hparams(ROOT / "hparams" / "wav2vec2_tiny_few.yaml", overrides),
                          args.device, args.precision, normalise,
                          args.compile_mode if args.compile else None, args.fused)
        counts = parameter_counts(torch.nn.ModuleList([trainer.embedder, trainer.classifier]),
                                  trainer.embedder, trainer.embedder.backbone_trains)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        rate = model_rate(trainer, batch, args.steps)
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:9.2f}" if cuda else f"{'n/a':>9s}"
        print(f"{name:14s} {counts['trainable']:12,d} {counts['total']:12,d} {rate:8.2f} "
              f"{rate * args.batch:8.1f} {peak}", flush=True)
        del trainer
        gc.collect()  # the previous method's model and optimiser off the next one's peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="timed steps per model / loop")
    p.add_argument("--loader_batches", type=int, default=20)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--files", type=int, default=400)
    p.add_argument("--models", nargs="+", default=["xvector", "ecapa", "wav2vec2"])
    p.add_argument("--base", action="store_true", help="also a wav2vec2-base-sized model")
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU check: --batch 100)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--skip_loops", action="store_true", help="model rates only")
    p.add_argument("--input_normalisation", default="utterance", choices=["utterance", "crop"],
                   help="wav2vec2's (hparams/shared/wav2vec2.yaml; default %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the embedder")
    p.add_argument("--compile_mode", default="default",
                   choices=["default", "reduce-overhead", "max-autotune",
                            "max-autotune-no-cudagraphs"])
    p.add_argument("--fused", action="store_true", help="Adam's fused kernel")
    p.add_argument("--no_gradient_checkpointing", action="store_true",
                   help="wav2vec2 without gradient checkpointing (more memory, less compute)")
    p.add_argument("--augment", nargs="+", default=[], choices=lowres_augment.SIDES,
                   help="also measure the modern grid's augmentation with these augment_side")
    p.add_argument("--adaptation_methods", nargs="+", choices=[*ADAPTATION_METHODS, "all"],
                   help="instead, the wav2vec2 (--base: base-sized) trained as these methods "
                        "of hparams/grids/adaptation.yaml")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"benchmark on {gpu}: batch {args.batch} x {CROP:.0f} s, {args.precision}, "
          f"{args.workers} loader workers, torch threads {torch.get_num_threads()}; "
          f"compile {args.compile_mode if args.compile else 'off'}, fused Adam "
          f"{'on' if args.fused else 'off'}, wav2vec2 gradient checkpointing "
          f"{'off' if args.no_gradient_checkpointing else 'on'}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = write_corpus(tmp, args.files, n_speakers=40)
        t0 = time.perf_counter()
        add_wav_stats(csv_path, jobs=max(1, args.workers))
        stats_s = time.perf_counter() - t0
        encoder = lowres_data.speaker_encoder(csv_path, tmp / "labels.txt")
        if args.adaptation_methods:
            adaptation_rates(args, tmp, csv_path, encoder)
            return
        n_batches = args.loader_batches
        ours = loader_rate(our_loader(csv_path, encoder, args.batch, args.workers, n_batches),
                           n_batches)
        ours_norm = loader_rate(our_loader(csv_path, encoder, args.batch, args.workers,
                                           n_batches, normalise=True), n_batches)
        stock_full = loader_rate(stock_loader(csv_path, encoder, args.batch, args.workers, False,
                                              n_batches), n_batches)
        stock_part = loader_rate(stock_loader(csv_path, encoder, args.batch, args.workers, True,
                                              n_batches), n_batches)
        print(f"wav statistics (prepare.wav_stats) of {args.files} files: {stats_s:.1f} s, "
              f"{args.files / stats_s:.0f} files/s with {max(1, args.workers)} threads")
        print(f"loader items/s   lowres.data.loading {ours:8.1f} | + utterance normalisation "
              f"{ours_norm:8.1f} | stock full read + crop {stock_full:8.1f} | stock partial "
              f"read {stock_part:8.1f}")
        fetch = [item_us(loader.dataset, key) for loader, key in (
            (our_loader(csv_path, encoder, 1, 0, 1), lambda i: (i, i)),
            (our_loader(csv_path, encoder, 1, 0, 1, normalise=True), lambda i: (i, i)),
            (stock_loader(csv_path, encoder, 1, 0, False), lambda i: i),
            (stock_loader(csv_path, encoder, 1, 0, True), lambda i: i))]
        print(f"one item (us, no DataLoader)  lowres {fetch[0]:6.0f} | + utterance "
              f"normalisation {fetch[1]:6.0f} | stock full read + crop {fetch[2]:6.0f} | "
              f"stock partial read {fetch[3]:6.0f}")
        augments = augmentations(tmp / "collections", args.augment)
        aug_rate = {(side, norm): loader_rate(our_loader(
            csv_path, encoder, args.batch, args.workers, n_batches, norm, aug), n_batches)
            for side, aug in augments.items() for norm in (False, True)}
        for side, aug in augments.items():
            us = item_us(our_loader(csv_path, encoder, 1, 0, 1, augment=aug).dataset,
                         lambda i: (i, i))
            print(f"augmented (hparams/overrides/augment.yaml), augment_side {side}: loader "
                  f"items/s {aug_rate[side, False]:8.1f} | + utterance normalisation "
                  f"{aug_rate[side, True]:8.1f} | one item (us, no DataLoader) {us:6.0f}")

        models = [(m, f"hparams/{m}_tiny_few.yaml", None) for m in args.models]
        sources = {}
        if "wav2vec2" in args.models:
            sources["wav2vec2"] = save_tiny_wav2vec2(tmp / "w2v2_tiny", "tiny")
        if args.base:
            sources["wav2vec2-base"] = save_tiny_wav2vec2(tmp / "w2v2_base", "base")
            models.append(("wav2vec2-base", "hparams/wav2vec2_tiny_few.yaml", None))
        utterance = args.input_normalisation == "utterance"
        header = (f"{'model':14s} {'steps/s':>8s} {'utt/s':>8s} {'loader/model':>12s} "
                  f"{'loop ours':>10s} {'loop stock':>10s} {'peak GiB':>9s}")
        if "device" in augments:  # the step with the device side's augmentation in it
            header += f" {'steps/s aug device':>18s}"
        for side in augments:
            header += f" {f'aug {side}/model':>17s} {f'loop aug {side}':>16s}"
        print(header)
        for name, cell, _ in models:
            overrides = {"data_folder": str(tmp), "n_speakers": len(encoder)}
            normalise = name.startswith("wav2vec2") and utterance  # as train.py loads it
            if name.startswith("wav2vec2"):
                overrides["wav2vec2_source"] = str(sources[name])
                overrides["gradient_checkpointing"] = not args.no_gradient_checkpointing
            trainer = Trainer(load_hparams(ROOT / cell, overrides), args.device, args.precision,
                              normalise, args.compile_mode if args.compile else None, args.fused)
            supply = ours_norm if normalise else ours
            batch = next(iter(our_loader(csv_path, encoder, args.batch, 0, 1, normalise)))
            slow = name == "wav2vec2-base" and args.device == "cpu"
            steps = max(2, args.steps // (4 if slow else 1))
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            rate = model_rate(trainer, batch, steps)
            peak = (torch.cuda.max_memory_allocated() / 2**30
                    if args.device.startswith("cuda") else float("nan"))
            utt = rate * args.batch
            loop_ours = loop_stock = float("nan")
            if not args.skip_loops:  # interleaved, best of two: less order/noise bias
                ours_runs, stock_runs = [], []
                for _ in range(2):
                    ours_runs.append(loop_rate(trainer, our_loader(
                        csv_path, encoder, args.batch, args.workers, steps, normalise), steps))
                    stock_runs.append(loop_rate(trainer, stock_loader(
                        csv_path, encoder, args.batch, args.workers, False, steps), steps))
                loop_ours, loop_stock = max(ours_runs), max(stock_runs)
            row = (f"{name:14s} {rate:8.2f} {utt:8.1f} {supply / utt:11.1f}x "
                   f"{loop_ours:10.2f} {loop_stock:10.2f} {peak:9.2f}")
            rates = {"loader": rate}
            if "device" in augments:
                trainer.device_augment = augments["device"].augment_batch
                rates["device"] = model_rate(trainer, next(iter(our_loader(
                    csv_path, encoder, args.batch, 0, 1, normalise, augments["device"]))), steps)
                row += f" {rates['device']:18.2f}"
            for side, aug in augments.items():
                trainer.device_augment = aug.augment_batch if aug.on_device else None
                loop = float("nan")
                if not args.skip_loops:
                    loop = max(loop_rate(trainer, our_loader(
                        csv_path, encoder, args.batch, args.workers, steps, normalise, aug),
                        steps) for _ in range(2))
                lead = aug_rate[side, normalise] / (rates[side] * args.batch)
                row += f" {lead:16.1f}x {loop:16.2f}"
            trainer.device_augment = None
            print(row, flush=True)
            del trainer


if __name__ == "__main__":
    main()
