"""Training and validation data over the prepared manifests (STUDY.md §3).

One training item is one random ``crop_seconds`` crop of an utterance, read from disk
with ``soundfile`` start/stop, so only the crop is decoded. Which crop is taken is a
pure function of ``(seed, draw)``, where ``draw`` is the position of the item in the
run's stream of training items (``draw = (epoch - 1) * items_per_epoch + position``).
The order of that stream is a pure function of ``(seed, pass)`` as well
(:class:`StepBudgetSampler`), so a run resumed from a checkpoint at any step sees
exactly the items, and the crops, of an uninterrupted run.

Validation items are the first ``crop_seconds`` of each validation file.
A file shorter than the crop is used whole; ``PaddedBatch`` pads it and
reports its relative length, which the embedders honour.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from lowres.io.lists import ListError, manifest_items, read_manifest

SAMPLE_RATE = 16000


def crop_offset(seed: int, draw: int, num_frames: int, crop_frames: int) -> int:
    """Start frame of the crop for training draw ``draw`` (uniform, deterministic)."""
    room = num_frames - crop_frames
    if room <= 0:
        return 0
    return int(np.random.default_rng((int(seed), int(draw))).integers(0, room + 1))


def read_segment(path: str, start: int, frames: int) -> torch.Tensor:
    """Frames ``[start, start + frames)`` of a mono file as float32 (shorter at the end)."""
    sig, _ = sf.read(path, start=start, stop=start + frames, dtype="float32", always_2d=False)
    if sig.ndim > 1:  # keep the first channel of an unexpected multi-channel file
        sig = sig[:, 0]
    return torch.from_numpy(np.ascontiguousarray(sig))


class DrawDataset(DynamicItemDataset):
    """A DynamicItemDataset indexed by ``(index, draw)``; ``draw`` reaches the pipeline."""

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, draw = key
        else:
            index, draw = key, 0
        data_id = self.data_ids[index]
        return self.pipeline.compute_outputs({"id": data_id, **self.data[data_id], "draw": draw})


def train_dataset(csv_path, label_encoder: CategoricalEncoder | None, crop_seconds: float,
                  seed: int, sample_rate: int = SAMPLE_RATE) -> DrawDataset:
    """Training items ``id, sig, spk_id_encoded``: one seeded random crop per draw."""
    data = manifest_items(read_manifest(csv_path))
    for item in data.values():
        item["draw"] = 0
    crop_frames = int(round(crop_seconds * sample_rate))

    @takes("wav", "duration", "draw")
    @provides("sig")
    def random_crop(wav, duration, draw):
        num_frames = int(duration * sample_rate)
        start = crop_offset(seed, draw, num_frames, crop_frames)
        return read_segment(wav, start, crop_frames)

    dataset = DrawDataset(data, dynamic_items=[random_crop])
    return _with_labels(dataset, label_encoder)


def valid_dataset(csv_path, label_encoder: CategoricalEncoder | None, crop_seconds: float,
                  sample_rate: int = SAMPLE_RATE) -> DynamicItemDataset:
    """Validation items ``id, sig, spk_id_encoded``: the first ``crop_seconds`` of each file."""
    crop_frames = int(round(crop_seconds * sample_rate))

    @takes("wav")
    @provides("sig")
    def first_crop(wav):
        return read_segment(wav, 0, crop_frames)

    items = manifest_items(read_manifest(csv_path))
    dataset = DynamicItemDataset(items, dynamic_items=[first_crop])
    return _with_labels(dataset, label_encoder)


def _with_labels(dataset, label_encoder):
    keys = ["id", "sig"]
    if label_encoder is not None:
        def encode(spk_id):
            if spk_id not in label_encoder.lab2ind:
                raise ListError(f"speaker {spk_id!r} is not among the training speakers")
            return torch.LongTensor([label_encoder.lab2ind[spk_id]])

        dataset.add_dynamic_item(encode, takes="spk_id", provides="spk_id_encoded")
        keys.append("spk_id_encoded")
    dataset.set_output_keys(keys)
    return dataset


def speaker_encoder(train_csv, path) -> CategoricalEncoder:
    """Speaker label encoder over the training manifest, saved at (or loaded from) ``path``.

    Labels are assigned in sorted speaker order, so the mapping depends on the data only.
    """
    encoder = CategoricalEncoder()
    path = Path(path)
    if path.is_file():
        encoder.load(path)
        return encoder
    speakers = sorted(set(read_manifest(train_csv, required=("ID", "spk_id")).spk_id))
    encoder.update_from_iterable(speakers)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder.save(path)
    return encoder


class StepBudgetSampler(torch.utils.data.Sampler):
    """Yields ``(index, draw)`` for one "epoch" of ``items_per_epoch`` draws.

    The run's item stream is the concatenation of seeded permutations of the dataset
    (pass ``k`` is ``permutation(seed, k)``), cut into epochs of ``items_per_epoch``;
    an epoch may span passes. Call :meth:`set_epoch` (1-based, as SpeechBrain's
    ``EpochCounter``) before iterating. Under DDP SpeechBrain wraps this sampler in a
    ``DistributedSamplerWrapper`` that gives every rank an interleaved share.
    """

    def __init__(self, num_items: int, items_per_epoch: int, seed: int):
        if num_items <= 0:
            raise ValueError("StepBudgetSampler: empty dataset")
        self.num_items = int(num_items)
        self.items_per_epoch = int(items_per_epoch)
        self.seed = int(seed)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _permutation(self, k: int) -> np.ndarray:
        return np.random.default_rng((self.seed, 1_000_003, k)).permutation(self.num_items)

    def __iter__(self):
        first = (self.epoch - 1) * self.items_per_epoch
        draw, end = first, first + self.items_per_epoch
        while draw < end:
            k, pos = divmod(draw, self.num_items)
            perm = self._permutation(k)
            take = min(end - draw, self.num_items - pos)
            for i in range(take):
                yield (int(perm[pos + i]), draw + i)
            draw += take

    def __len__(self) -> int:
        return self.items_per_epoch


def steps_per_epoch(val_interval, num_items: int, batch_size: int) -> int:
    """Optimiser steps between validations: ``val_interval`` steps, or one pass ("epoch")."""
    if val_interval == "epoch":
        return max(1, num_items // batch_size)
    if isinstance(val_interval, bool) or not isinstance(val_interval, int) or val_interval <= 0:
        raise ValueError(f"val_interval must be a positive integer or 'epoch': {val_interval!r}")
    return val_interval


def num_epochs(max_steps: int, steps_in_epoch: int) -> int:
    """Number of validation intervals needed to reach ``max_steps``."""
    return math.ceil(max_steps / steps_in_epoch)
