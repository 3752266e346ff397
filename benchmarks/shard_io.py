"""Training-data I/O, one wav file per utterance vs WebDataset shards: files opened and
items/s of each.

    python benchmarks/shard_io.py --manifest M/<subset>/train.csv --shards S/<subset>/train
        [--items 1000] [--batch 100] [--crop_seconds 2] [--open_delay_ms 5]

Reads ``--items`` training crops through the recipe's own training data (the datasets of
lowres.data.loading; files: StepBudgetSampler's order, shards: lowres.data.shards's
ShardAudio and ShardOrderSampler, one loader process) and prints, for each way of
reading, the files opened per 1,000 items and the items per second, on the local disk
and on a simulated slow file system that waits ``--open_delay_ms`` at every file open
(the metadata round trip of a network file system; the reads themselves are not slowed).
Every file and shard is read once before timing, so both ways start from a warm page
cache: the difference is the opens, not the disk.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch

from lowres.data import loading
from lowres.data import shards as shard_data

SEED = 42133724


class OpenCounter:
    """Counts (and with ``delay`` slows) every open of a file by path: soundfile's (one per
    utterance file) and ``os.open`` (the shards)."""

    def __init__(self, delay: float):
        self.delay, self.opens = delay, 0

    def _opened(self):
        self.opens += 1
        if self.delay:
            time.sleep(self.delay)

    @contextlib.contextmanager
    def installed(self):
        sf_init, os_open = sf.SoundFile.__init__, os.open

        def soundfile_init(sound, file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)):
                self._opened()
            return sf_init(sound, file, *args, **kwargs)

        def counted_open(path, *args, **kwargs):
            self._opened()
            return os_open(path, *args, **kwargs)

        sf.SoundFile.__init__, os.open = soundfile_init, counted_open
        try:
            yield self
        finally:
            sf.SoundFile.__init__, os.open = sf_init, os_open


def loader(kind: str, manifest: Path, shards: Path, items: int, batch: int,
           crop_seconds: float):
    """The training loader of ``kind`` (files | shards) for ``items`` draws."""
    steps = -(-items // batch)
    if kind == "files":
        dataset = loading.train_dataset(manifest, None, crop_seconds, SEED)
        sampler = loading.StepBudgetSampler(len(dataset), [steps * batch], SEED)
    else:
        audio = shard_data.ShardAudio([shards])
        dataset = loading.train_dataset(manifest, None, crop_seconds, SEED,
                                        read=audio.read_segment)
        sampler = shard_data.ShardOrderSampler(
            len(dataset), [steps * batch], SEED, shards=audio.dataset_shards(shards, dataset),
            buffer=128)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=batch,
                                       collate_fn=PaddedBatch)


def measure(kind: str, args, delay: float) -> tuple[float, float]:
    """(files opened per 1,000 items, items per second)."""
    data = loader(kind, args.manifest, args.shards, args.items, args.batch, args.crop_seconds)
    with OpenCounter(delay).installed() as counter:
        start, n = time.perf_counter(), 0
        for batch in data:
            n += len(batch.id)
        seconds = time.perf_counter() - start
    return 1000 * counter.opens / n, n / seconds


def warm_cache(manifest: Path, shards: Path) -> None:
    for path in [*loading.read_manifest(manifest).wav, *sorted(shards.glob("*.tar"))]:
        Path(path).read_bytes()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True, help="a train.csv")
    p.add_argument("--shards", type=Path, required=True,
                   help="its shards (python -m prepare.shards: S/<subset>/train)")
    p.add_argument("--items", type=int, default=1000, help="training items read per case")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--crop_seconds", type=float, default=2.0)
    p.add_argument("--open_delay_ms", type=float, default=5.0,
                   help="the simulated slow file system's wait per file open")
    args = p.parse_args(argv)
    index = shard_data.read_index(args.shards)
    print(f"{index['samples']} utterances in {len(index['shards'])} shards; {args.items} "
          f"items of {args.crop_seconds:g} s, batch {args.batch}, 1 loader process, "
          "warm page cache")
    warm_cache(args.manifest, args.shards)
    print("| file system | data | files opened / 1,000 items | items/s |\n|---|---|---|---|")
    for name, delay in (("local disk", 0.0), (f"+{args.open_delay_ms:g} ms per open",
                                              args.open_delay_ms / 1000)):
        for kind in ("files", "shards"):
            opens, rate = measure(kind, args, delay)
            print(f"| {name} | {kind} | {opens:,.1f} | {rate:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
