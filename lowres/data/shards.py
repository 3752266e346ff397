"""Training, validation and test audio from WebDataset shards (``data_format: shards``).

On a cluster file system one small file per utterance costs a metadata round trip per
training item; ``python -m prepare.shards`` (prepare/shards.py) packs each split into tar
shards of ~5,000 utterances as the study did, and this module reads them.

Layout of a shard folder ``S`` (one ``index.json`` per split folder)::

    S/<subset>/train/  train-000000.tar  train-000000.idx.json  ...  index.json
    S/<subset>/val/    val-000000.tar    ...
    S/test/            the union of the test manifests' files

Each tar holds, per utterance, ``<ID>.wav`` (the file's bytes) and ``<ID>.json`` (its
manifest row), readable by ``webdataset.WebDataset``.  ``<name>.idx.json`` lists where
each wav lies in its tar (byte offset and size), so :class:`ShardAudio` reads any
utterance, or only a crop of it, with one positioned read from a shard that stays open:
a training pass opens each shard once per loader worker instead of opening every file.

The manifests stay the source of the metadata (labels, durations, statistics) and the
datasets are those of :mod:`lowres.data.loading` with their reads redirected here, so
crops (a pure function of ``(seed, draw)``), labels and normalisation are the file
loader's.  What differs is the order (:class:`ShardOrderSampler`): per pass a seeded
permutation of the shards, read one after the other, and a seeded shuffle within
windows of ``shard_buffer`` consecutive items, in place of WebDataset's shard shuffle
and 128-sample shuffle buffer (docs/study.md, 'Data in the published runs').  Being a pure
function of ``(seed, pass)`` it keeps the exact resume and the rank / worker split of the
file loader.
"""

from __future__ import annotations

import collections
import functools
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lowres.io.atomic import read_json
from lowres.io.audio import read_audio, read_segment
from lowres.io.hparams import invalid_hparam
from lowres.io.lists import ListError, read_manifest, test_set_files, test_set_names

from . import loading

logger = logging.getLogger(__name__)

FORMAT = "lowres-shards-1"
INDEX_FILE = "index.json"
DATA_FORMATS = ("files", "shards")
TEST_FOLDER = "test"
#: bytes read ahead from a wav's start, so that the header is parsed from memory
HEADER_BYTES = 4096


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def table_name(shard: str) -> str:
    """The member table written beside each shard: ``train-000000.idx.json``."""
    return shard.removesuffix(".tar") + ".idx.json"


def split_folder(shard_folder: str | os.PathLike, subset: str | None, split: str) -> Path:
    """``S/<subset>/<split>`` for ``train`` and ``val``, ``S/test`` for the test sets."""
    if split == TEST_FOLDER:
        return Path(shard_folder) / TEST_FOLDER
    return Path(shard_folder) / str(subset) / split


def read_index(folder: str | os.PathLike) -> dict:
    """A split folder's ``index.json``; ListError when missing (or written by another
    version), naming the command that makes it."""
    path = Path(folder) / INDEX_FILE
    index = read_json(path)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ListError(f"no complete shards in {folder} ({path} is missing or not "
                        f"{FORMAT}): python -m prepare.shards --manifest_folder M --out "
                        f"{Path(folder).parent if Path(folder).name != TEST_FOLDER else folder}")
    return index


class _Slice(io.RawIOBase):
    """The bytes ``[base, base + size)`` of an open file as a read-only file (for
    soundfile), read with ``os.pread`` so that forked loader workers sharing the file
    descriptor never disturb each other; the first :data:`HEADER_BYTES` are read at once."""

    def __init__(self, fd: int, base: int, size: int):
        super().__init__()
        self.fd, self.base, self.size, self.pos = fd, base, size, 0
        self.head = os.pread(fd, min(size, HEADER_BYTES), base)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, start + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.size - self.pos))
        if self.pos + n <= len(self.head):
            data = self.head[self.pos:self.pos + n]
        else:
            data = os.pread(self.fd, n, self.base + self.pos)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


class ShardAudio:
    """The utterances of one or more split folders, by their manifest ``wav`` path.

    Shards are opened on first use and kept open (at most ``max_open``, least recently
    used closed first).  Picklable: a copy opens its own files.
    """

    def __init__(self, folders: Sequence[str | os.PathLike], max_open: int = 64):
        self.folders = [Path(f) for f in folders]
        self.max_open = int(max_open)
        self.paths: list[Path] = []
        self.shards: dict[Path, list[list[str]]] = {}
        self._where: dict[str, tuple[int, int, int]] = {}
        for folder in self.folders:
            index = read_index(folder)
            per_shard = []
            for entry in index["shards"]:
                table = read_json(folder / entry["table"])
                if not isinstance(table, dict) or len(table.get("wav", ())) != entry["samples"]:
                    raise ListError(f"shard table {folder / entry['table']} is missing or does "
                                    f"not list the {entry['samples']} samples of {entry['name']}")
                number = len(self.paths)
                self.paths.append(folder / entry["name"])
                for wav, offset, size in zip(table["wav"], table["offset"], table["size"],
                                             strict=True):
                    self._where[wav] = (number, int(offset), int(size))
                per_shard.append(list(table["wav"]))
            self.shards[folder] = per_shard
        self._open: collections.OrderedDict[int, int] = collections.OrderedDict()

    def __getstate__(self):
        return {**self.__dict__, "_open": collections.OrderedDict()}

    def __del__(self):
        for fd in getattr(self, "_open", {}).values():
            os.close(fd)

    def __contains__(self, wav: str) -> bool:
        return wav in self._where

    def _fd(self, number: int) -> int:
        fd = self._open.get(number)
        if fd is None:
            fd = os.open(self.paths[number], os.O_RDONLY)
            self._open[number] = fd
            if len(self._open) > self.max_open:
                os.close(self._open.popitem(last=False)[1])
        self._open.move_to_end(number)
        return fd

    def open(self, wav: str) -> _Slice:
        """The wav file ``wav`` (a manifest path) as a file object inside its shard."""
        try:
            number, offset, size = self._where[wav]
        except KeyError:
            raise ListError(f"{wav} is not in the shards of "
                            f"{', '.join(map(str, self.folders))}") from None
        return _Slice(self._fd(number), offset, size)

    def read_segment(self, wav: str, start: int, frames: int) -> torch.Tensor:
        """:func:`lowres.io.audio.read_segment` of the file in its shard (the crop only)."""
        return read_segment(self.open(wav), start, frames)

    def load_audio(self, wav: str) -> torch.Tensor:
        """The whole utterance, as :func:`lowres.io.audio.load_audio` reads a file."""
        return read_audio(self.open(wav), name=f"{wav} (in {self.paths[self._where[wav][0]]})")

    def check_covers(self, manifest: str | os.PathLike, exactly: Path | None = None) -> None:
        """Every file of ``manifest`` is in the shards (and, with ``exactly`` a split folder,
        that folder holds nothing else): ListError saying to remake the shards otherwise."""
        wavs = read_manifest(manifest).wav
        missing = [w for w in wavs if w not in self._where]
        extra = 0
        if exactly is not None:
            extra = sum(len(s) for s in self.shards[exactly]) - (len(wavs) - len(missing))
        if missing or extra:
            raise ListError(
                f"the shards do not hold the files of {manifest}: {len(missing)} of its "
                f"{len(wavs)} files are missing"
                + (f" (e.g. {missing[0]})" if missing else "")
                + (f", {extra} other files are in {exactly}" if extra else "")
                + "; remake them: python -m prepare.shards (it redoes what changed)")

    def dataset_shards(self, folder: Path, dataset) -> list[np.ndarray]:
        """Per shard of ``folder``, the indices in ``dataset`` (a loading dataset over the
        same manifest) of its utterances, in the order they were written."""
        index_of = {dataset.data[i]["wav"]: n for n, i in enumerate(dataset.data_ids)}
        return [np.array([index_of[w] for w in shard], dtype=np.int64)
                for shard in self.shards[folder]]


class ShardOrderSampler(loading.StepBudgetSampler):
    """:class:`~lowres.data.loading.StepBudgetSampler` with the shards' order: pass ``k``
    reads the shards in the seeded order ``permutation(seed, k)`` and shuffles the items
    within each window of ``buffer`` consecutive ones (seeded too).  ``shards``: per shard
    the dataset indices of its items, in their written order."""

    def __init__(self, num_items: int, epoch_ends: Sequence[int], seed: int,
                 items_per_pass: int | None = None, rank: int = 0, world_size: int = 1, *,
                 shards: Sequence[np.ndarray], buffer: int):
        super().__init__(num_items, epoch_ends, seed, items_per_pass, rank, world_size)
        self.shards = [np.asarray(s, dtype=np.int64) for s in shards]
        every = np.sort(np.concatenate(self.shards)) if self.shards else np.array([])
        if not np.array_equal(every, np.arange(self.num_items)):
            raise ValueError("ShardOrderSampler: the shards must hold each item once")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"ShardOrderSampler: buffer must be a positive integer: {buffer!r}")
        self.buffer = buffer

    def _permutation(self, k: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 2_000_029, k))
        stream = np.concatenate([self.shards[s] for s in rng.permutation(len(self.shards))])
        window = np.arange(len(stream)) // self.buffer
        return stream[np.lexsort((rng.random(len(stream)), window))]


def check_hparams(values: dict) -> None:
    """``data_format`` is known; with shards, ``shard_folder`` is set (HparamsError)."""
    fmt = values.get("data_format", "files")
    if fmt not in DATA_FORMATS:
        raise invalid_hparam("data_format", fmt, f"must be one of {', '.join(DATA_FORMATS)}")
    if fmt == "shards" and not values.get("shard_folder"):
        raise invalid_hparam("shard_folder", None, "data_format shards reads the shards of "
                             "python -m prepare.shards from it")


def datasets(hparams: dict, label_encoder, normalise: bool, augment=None):
    """``data_format: shards``: the training and validation datasets of
    :mod:`lowres.data.loading` reading from ``shard_folder``, and the sampler class
    (:class:`ShardOrderSampler` with the shards' order, to be given StepBudgetSampler's
    arguments).  Checks now that the shards hold the manifests' files (and the test
    sets', when training evaluates).  ``augment`` (lowres.data.augment) augments the
    crops read from the shards; its noise collections stay files."""
    check_hparams(hparams)
    folder, subset = hparams["shard_folder"], hparams["subset"]
    train_folder, val_folder = (split_folder(folder, subset, s) for s in ("train", "val"))
    audio = ShardAudio([train_folder, val_folder])
    audio.check_covers(hparams["train_csv"], exactly=train_folder)
    audio.check_covers(hparams["valid_csv"])
    logger.info("training data from WebDataset shards: %s; validation: %s",
                _describe(audio, train_folder, "train"), _describe(audio, val_folder, "val"))
    if hparams.get("evaluate_after_training"):
        check_test_shards(hparams, eval_audio(hparams))
    common = dict(sample_rate=hparams["sample_rate"], normalise=normalise,
                  read=audio.read_segment)
    train_set = loading.train_dataset(hparams["train_csv"], label_encoder,
                                      hparams["crop_seconds"], hparams["seed"],
                                      augment=augment, **common)
    valid_set = loading.valid_dataset(hparams["valid_csv"], label_encoder,
                                      hparams["crop_seconds"], **common)
    sampler = functools.partial(ShardOrderSampler,
                                shards=audio.dataset_shards(train_folder, train_set),
                                buffer=hparams.get("shard_buffer", 128))
    return train_set, valid_set, sampler


def _describe(audio: ShardAudio, folder: Path, split: str) -> str:
    """``4 shards S/sub/train/train-*.tar (19,830 utterances)``, for the run's log."""
    shards = audio.shards[folder]
    return f"{len(shards)} shards {folder}/{split}-*.tar ({sum(map(len, shards)):,} utterances)"


def eval_audio(hparams: dict) -> ShardAudio | None:
    """The whole utterances the evaluation embeds, from ``shard_folder``: validation, the
    test sets (``S/test``) and, for an AS-norm cohort, the training set; None with
    ``data_format: files``."""
    if hparams.get("data_format", "files") != "shards":
        return None
    check_hparams(hparams)
    folder, subset = hparams["shard_folder"], hparams["subset"]
    folders = [split_folder(folder, subset, "val")]
    if hparams.get("post_process_scores") or hparams.get("enroll_training_data"):
        folders.append(split_folder(folder, subset, "train"))
    if (split_folder(folder, subset, TEST_FOLDER) / INDEX_FILE).is_file():
        folders.append(split_folder(folder, subset, TEST_FOLDER))
    return ShardAudio(folders)


def check_test_shards(hparams: dict, audio: ShardAudio) -> None:
    """The test sets of ``hparams`` are in ``audio`` (ListError naming a missing file)."""
    for name in test_set_names(hparams["test_sets"]):
        audio.check_covers(test_set_files(hparams["manifest_folder"], name)[0])
