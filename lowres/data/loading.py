"""Training and validation data over the prepared manifests (docs/study.md, 'Training
recipe' and 'What the published runs did').

One training item is one random ``crop_seconds`` crop of an utterance, read from disk
with ``soundfile`` start/stop, so only the crop is decoded (lowres.io.audio). Which crop
is taken is a pure function of ``(seed, draw)`` (lowres.data.crops), where ``draw`` is the
position of the item in the run's stream of training items (step ``s`` holds draws
``[(s - 1) * batch, s * batch)``).
The order of that stream is a pure function of ``(seed, pass)`` as well
(:class:`StepBudgetSampler`), so a run resumed from a checkpoint at any step sees
exactly the items, and the crops, of an uninterrupted run.

Validation items are the first ``crop_seconds`` of each validation file.
A file shorter than the crop is used whole; ``PaddedBatch`` pads it and
reports its relative length, which the embedders honour.

``normalise=True`` (wav2vec2's ``input_normalisation: utterance``, what the published
runs did) normalises each crop with its whole file's mean and standard deviation (the
manifest's ``wav_mean`` / ``wav_std``, prepare.wav_stats): the crop of the normalised
utterance, without reading the whole file per item.

When training validates (:func:`training_schedule`): SpeechBrain's "epochs" are the
stretches of training between two validations (the last one ends at ``max_steps``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from lowres.data.augment import PLAN_KEYS, CropAugment
from lowres.data.crops import crop_offset, normalise_with, normalising_scale
from lowres.io.audio import SAMPLE_RATE, read_segment
from lowres.io.lists import STATS_COLUMNS, ListError, manifest_items, read_manifest

VAL_SCHEDULES = ("pass", "steps")
INPUT_NORMALISATIONS = ("utterance", "crop")  # wav2vec2: per file (as published) | per crop


def _items(csv_path, normalise: bool) -> dict[str, dict]:
    df = read_manifest(csv_path)
    if normalise:
        missing = [c for c in STATS_COLUMNS if c not in df.columns]
        if missing or not np.isfinite(df[list(STATS_COLUMNS)].to_numpy(dtype=float)).all():
            raise ListError(f"manifest {csv_path} lacks the per-file statistics "
                            f"{'/'.join(STATS_COLUMNS)} that utterance normalisation needs: "
                            f"python -m prepare.wav_stats {csv_path}")
    return manifest_items(df)


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
                  seed: int, sample_rate: int = SAMPLE_RATE,
                  normalise: bool = False, augment: CropAugment | None = None,
                  read=read_segment) -> DrawDataset:
    """Training items ``id, sig, spk_id_encoded``: one seeded random crop per draw
    (``normalise``: with the file's statistics, see the module doc; ``augment``: the
    crop augmented, lowres.data.augment, before it is normalised; ``read``: reads
    ``(wav, start, frames)``, :func:`lowres.io.audio.read_segment` or from shards,
    lowres.data.shards). With ``augment.on_device`` (``augment_side: device``) the items
    hold the crop before its augmentation and normalisation, the augmentation's draws
    (``PLAN_KEYS``) and ``wav_stats`` (``normalise``: mean and
    :func:`lowres.data.crops.normalising_scale`), which the Brain applies on the device
    (``augment.augment_batch``)."""
    data = _items(csv_path, normalise)
    for item in data.values():
        item["draw"] = 0
    crop_frames = int(round(crop_seconds * sample_rate))
    if augment is not None and augment.on_device:
        return _planned_dataset(data, label_encoder, crop_frames, seed, sample_rate,
                                normalise, augment, read)

    def crop(wav, duration, draw):
        num_frames = int(duration * sample_rate)
        if augment is not None:  # also a pure function of (seed, draw)
            return augment.crop(wav, num_frames, crop_frames, seed, draw, read)
        start = crop_offset(seed, draw, num_frames, crop_frames)
        return read(wav, start, crop_frames)

    if normalise:
        @takes("wav", "duration", "draw", *STATS_COLUMNS)
        @provides("sig")
        def random_crop(wav, duration, draw, mean, std):
            return normalise_with(crop(wav, duration, draw), mean, std)
    else:
        @takes("wav", "duration", "draw")
        @provides("sig")
        def random_crop(wav, duration, draw):
            return crop(wav, duration, draw)

    dataset = DrawDataset(data, dynamic_items=[random_crop])
    return _with_labels(dataset, label_encoder, _label_offset(augment, label_encoder, seed))


def _label_offset(augment, label_encoder, seed):
    """``offset(draw)`` of the label with speed-perturbed speakers as new classes, or None."""
    if augment is None or not augment.config.new_speakers or label_encoder is None:
        return None
    return lambda draw: augment.class_offset(seed, draw, len(label_encoder))


def _planned_dataset(data, label_encoder, crop_frames, seed, sample_rate, normalise, augment,
                     read) -> DrawDataset:
    """:func:`train_dataset` with ``augment_side: device`` (see there)."""
    @takes("wav", "duration", "draw")
    @provides("sig", *PLAN_KEYS)
    def planned_crop(wav, duration, draw):
        yield from augment.plan(wav, int(duration * sample_rate), crop_frames, seed, draw, read)

    items, keys = [planned_crop], list(PLAN_KEYS)
    if normalise:
        @takes(*STATS_COLUMNS)
        @provides("wav_stats")
        def wav_stats(mean, std):
            return torch.tensor([mean, normalising_scale(std)], dtype=torch.float64)

        items.append(wav_stats)
        keys.append("wav_stats")
    dataset = DrawDataset(data, dynamic_items=items)
    return _with_labels(dataset, label_encoder, _label_offset(augment, label_encoder, seed),
                        keys)


def valid_dataset(csv_path, label_encoder: CategoricalEncoder | None, crop_seconds: float,
                  sample_rate: int = SAMPLE_RATE, normalise: bool = False,
                  read=read_segment) -> DynamicItemDataset:
    """Validation items ``id, sig, spk_id_encoded``: the first ``crop_seconds`` of each file
    (``normalise``: with the file's statistics, see the module doc; ``read`` as for
    :func:`train_dataset`)."""
    crop_frames = int(round(crop_seconds * sample_rate))

    if normalise:
        @takes("wav", *STATS_COLUMNS)
        @provides("sig")
        def first_crop(wav, mean, std):
            return normalise_with(read(wav, 0, crop_frames), mean, std)
    else:
        @takes("wav")
        @provides("sig")
        def first_crop(wav):
            return read(wav, 0, crop_frames)

    dataset = DynamicItemDataset(_items(csv_path, normalise), dynamic_items=[first_crop])
    return _with_labels(dataset, label_encoder)


def _with_labels(dataset, label_encoder, offset=None, extra_keys=()):
    """Output keys ``id, sig``, ``extra_keys`` and the encoded speaker (plus
    ``offset(draw)``, if given)."""
    keys = ["id", "sig", *extra_keys]
    if label_encoder is not None:
        def encode(spk_id, draw=None):
            if spk_id not in label_encoder.lab2ind:
                raise ListError(f"speaker {spk_id!r} is not among the training speakers")
            extra = offset(draw) if offset is not None else 0
            return torch.LongTensor([label_encoder.lab2ind[spk_id] + extra])

        dataset.add_dynamic_item(encode, takes=["spk_id", "draw"] if offset else ["spk_id"],
                                 provides="spk_id_encoded")
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


@dataclass(frozen=True)
class Schedule:
    """When training validates: the run is cut into "epochs" (SpeechBrain's) that end at
    ``epoch_ends`` (optimiser steps, increasing, the last one ``max_steps``); a validation
    follows epoch ``e`` when ``validate[e - 1]``.  One pass over the data is
    ``items_per_pass`` draws (see :class:`StepBudgetSampler`)."""

    epoch_ends: tuple[int, ...]
    validate: tuple[bool, ...]
    items_per_pass: int

    @property
    def validation_steps(self) -> list[int]:
        return [s for s, v in zip(self.epoch_ends, self.validate, strict=True) if v]


def pass_batches(num_items: int, batch_size: int) -> int:
    """Batches of one pass over ``num_items`` items: the last one is partial in the study
    (WebDataset's ``batched``); here it is topped up with the pass's first items."""
    return math.ceil(num_items / batch_size)


def training_schedule(val_schedule: str, val_interval, num_items: int, batch_size: int,
                      max_steps: int) -> Schedule:
    """The validation steps of a run (docs/study.md, 'Training recipe' and 'Training and
    evaluation in the published runs').

    ``val_schedule="pass"`` (the published runs, PyTorch Lightning's
    ``val_check_interval``): ``val_interval`` counts the batches of each pass over the
    data, restarting every pass of :func:`pass_batches` batches (``"epoch"``: at the end of
    each pass), and there is no validation at ``max_steps`` unless one falls there.
    E.g. 10 items, batch 2, val_interval 2: passes of 5 batches, validations at steps
    2, 4, 7, 9, 12, 14, ...  Every pass is ``pass_batches * batch_size`` draws.

    ``val_schedule="steps"``: every ``val_interval`` optimiser steps across passes
    (``"epoch"``: every ``num_items // batch_size`` steps) and at ``max_steps``; the draws
    run on through the passes (no topping up).
    """
    if val_schedule not in VAL_SCHEDULES:
        raise ValueError(f"val_schedule must be one of {', '.join(VAL_SCHEDULES)}: "
                         f"{val_schedule!r}")
    if val_interval != "epoch" and (isinstance(val_interval, bool)
                                    or not isinstance(val_interval, int) or val_interval <= 0):
        raise ValueError(f"val_interval must be a positive integer or 'epoch': {val_interval!r}")
    if val_schedule == "pass":
        per_pass = pass_batches(num_items, batch_size)
        every = per_pass if val_interval == "epoch" else val_interval
        within = range(every, per_pass + 1, every)
        steps = [p * per_pass + k for p in range(math.ceil(max_steps / per_pass))
                 for k in within if p * per_pass + k <= max_steps]
        items_per_pass = per_pass * batch_size
    else:
        every = max(1, num_items // batch_size) if val_interval == "epoch" else val_interval
        steps = [*range(every, max_steps, every), max_steps]
        items_per_pass = num_items
    ends = steps if steps and steps[-1] == max_steps else [*steps, max_steps]
    validated = set(steps)
    return Schedule(tuple(ends), tuple(s in validated for s in ends), items_per_pass)


class StepBudgetSampler(torch.utils.data.Sampler):
    """Yields ``(index, draw)`` for the draws of one "epoch" (this process's share).

    The run's item stream: pass ``k`` is ``items_per_pass`` draws (default ``num_items``)
    of the seeded permutation ``permutation(seed, k)``, where positions past ``num_items``
    start the permutation again (so every batch is full; ``items_per_pass`` is then a
    multiple of the batch).  Epoch ``e`` (1-based, as SpeechBrain's ``EpochCounter``;
    call :meth:`set_epoch` before iterating) holds draws ``[epoch_ends[e - 2],
    epoch_ends[e - 1])``; an epoch may span passes.  Under DDP every process samples
    its interleaved share (``rank``, ``world_size``: draws ``start + rank``, ``start +
    rank + world_size``, ...), which SpeechBrain's ``DistributedSamplerWrapper`` would
    do for epochs of one length.
    """

    def __init__(self, num_items: int, epoch_ends: Sequence[int], seed: int,
                 items_per_pass: int | None = None, rank: int = 0, world_size: int = 1):
        if num_items <= 0:
            raise ValueError("StepBudgetSampler: empty dataset")
        self.num_items = int(num_items)
        self.epoch_ends = [int(e) for e in epoch_ends]
        if not self.epoch_ends or any(b <= a for a, b in zip([0, *self.epoch_ends],
                                                              self.epoch_ends, strict=False)):
            raise ValueError(f"StepBudgetSampler: epoch_ends must increase: {epoch_ends}")
        self.items_per_pass = int(items_per_pass or num_items)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _range(self) -> tuple[int, int]:
        return (self.epoch_ends[self.epoch - 2] if self.epoch > 1 else 0,
                self.epoch_ends[self.epoch - 1])

    def _permutation(self, k: int) -> np.ndarray:
        return np.random.default_rng((self.seed, 1_000_003, k)).permutation(self.num_items)

    def __iter__(self):
        first, end = self._range()
        k, perm = None, None
        for draw in range(first + self.rank, end, self.world_size):
            pass_k, pos = divmod(draw, self.items_per_pass)
            if pass_k != k:
                k, perm = pass_k, self._permutation(pass_k)
            yield (int(perm[pos % self.num_items]), draw)

    def __len__(self) -> int:
        first, end = self._range()
        return len(range(first + self.rank, end, self.world_size))
