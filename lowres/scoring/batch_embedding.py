"""Batched extraction of one speaker embedding per audio file (whole utterance).

Files are sorted by duration (longest first, so an out-of-memory error shows
up at once), grouped into batches, zero-padded to the longest file of the
batch and passed with SpeechBrain relative lengths (``n_samples / max_len``),
so for a padding-invariant embedder a batched embedding equals the one of the
file alone.  Embedders that see the padding (``padding_invariant = False``,
e.g. wav2vec2 whose group-norm CNN normalises over the whole padded signal)
only get files of exactly equal length batched together, i.e. no padding.
An embedder without the attribute is treated as not padding-invariant.

Audio is read by :func:`lowres.io.audio.load_audio` (multi-channel files averaged
to mono, other rates resampled to 16 kHz) unless the caller passes its own reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from lowres.io.audio import SAMPLE_RATE, audio_num_samples, load_audio
from lowres.io.progress import progress as progress_bar

__all__ = ["make_batches", "extract_embeddings"]


def make_batches(
    lengths: Sequence[int],
    padding_invariant: bool,
    batch_size: int = 16,
    max_batch_samples: int = SAMPLE_RATE * 400,
) -> list[list[int]]:
    """Group file indices into batches, longest files first.

    A batch holds at most ``batch_size`` files and at most ``max_batch_samples``
    padded samples (longest file x number of files; a single longer file still
    gets its own batch).  Without ``padding_invariant`` only files of exactly
    the same length share a batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    for idx in order.tolist():
        if current:
            longest = int(lengths[current[0]])  # sorted: first is longest
            full = (len(current) >= batch_size
                    or longest * (len(current) + 1) > max_batch_samples
                    or (not padding_invariant and int(lengths[idx]) != longest))
            if full:
                batches.append(current)
                current = []
        current.append(idx)
    if current:
        batches.append(current)
    return batches


class _BatchReader(torch.utils.data.Dataset):
    """Reads and pads one precomputed batch per item (so a DataLoader can prefetch).

    With ``tolerant`` a file that cannot be read is left out of its batch and returned
    as ``(index, message)`` in the item's last element instead of raising.
    """

    def __init__(self, paths: Sequence[str], batches: list[list[int]], tolerant: bool = False,
                 load: Callable[[str], torch.Tensor] = load_audio):
        self.paths = paths
        self.batches = batches
        self.tolerant = tolerant
        self.load = load

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        idx, wavs, failed = [], [], []
        for j in self.batches[i]:
            try:
                wavs.append(self.load(self.paths[j]))
                idx.append(j)
            except (OSError, RuntimeError) as err:
                if not self.tolerant:
                    raise
                failed.append((j, str(err)))
        if not wavs:
            return torch.zeros(0, dtype=torch.long), None, None, failed
        n = torch.tensor([w.numel() for w in wavs])
        padded = torch.zeros(len(wavs), int(n.max()))
        for row, w in enumerate(wavs):
            padded[row, : w.numel()] = w
        return torch.tensor(idx), padded, n.float() / n.max(), failed


def extract_embeddings(
    embedder: torch.nn.Module,
    paths: Sequence[str | os.PathLike],
    num_samples: Sequence[int] | None = None,
    batch_size: int = 16,
    max_batch_seconds: float = 400.0,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool | str = True,
    failures: dict[str, str] | None = None,
    load: Callable[[str], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Embeddings ``[len(paths), D]`` (float32, CPU) of every file, in the order of ``paths``.

    ``paths`` should be unique (each file is embedded once).  ``num_samples``
    (lengths at 16 kHz, e.g. from a manifest's durations) only steers the
    batching; when missing they are read from the file headers.  The embedder
    runs in eval mode under ``torch.no_grad``; its train/eval mode is
    restored afterwards.  ``progress``: a tqdm bar (a string is used as its
    description).  The first missing or unreadable file raises, unless a
    ``failures`` dict is given: then such files are recorded there (path ->
    reason), their rows are NaN, and the rest is embedded (``[len(paths), 0]``
    when no file could be read).  ``load`` reads one file in place of :func:`load_audio`
    (e.g. from shards: lowres.data.shards.ShardAudio.load_audio; ``num_samples`` is then
    needed, and ``paths`` name the files without being opened).
    """
    paths = [os.fspath(p) for p in paths]
    if len(set(paths)) != len(paths):
        raise ValueError("extract_embeddings: paths contain duplicates; pass each file once")
    if not paths:
        raise ValueError("extract_embeddings: no files given")
    lengths: dict[int, int] = {}
    for i, p in enumerate(paths):
        try:
            if load is None and not os.path.isfile(p):
                raise FileNotFoundError(f"audio file not found: {p}")
            lengths[i] = int(num_samples[i]) if num_samples is not None else audio_num_samples(p)
        except (OSError, RuntimeError) as err:
            if failures is None:
                raise
            failures[p] = str(err)
    todo = list(lengths)
    invariant = bool(getattr(embedder, "padding_invariant", False))
    batches = [[todo[k] for k in batch] for batch in make_batches(
        [lengths[i] for i in todo], invariant, batch_size, int(max_batch_seconds * SAMPLE_RATE))]
    loader = torch.utils.data.DataLoader(
        _BatchReader(paths, batches, tolerant=failures is not None, load=load or load_audio),
        batch_size=None,
        shuffle=False, num_workers=num_workers,
    )
    was_training = embedder.training
    embedder.eval()
    out: torch.Tensor | None = None
    desc = progress if isinstance(progress, str) else "embeddings"
    bar = progress_bar(total=len(paths), initial=len(paths) - len(todo), desc=desc,
                       unit="file", disable=not progress)
    try:
        with torch.no_grad():
            for idx, wavs, lens, failed in loader:
                for j, message in failed:
                    failures[paths[j]] = message
                bar.update(len(failed))
                if not len(idx):
                    continue
                emb = embedder(wavs.to(device), lens.to(device)).float().cpu()
                if emb.ndim == 3 and emb.shape[1] == 1:  # SpeechBrain style [B, 1, D]
                    emb = emb[:, 0]
                if out is None:
                    out = torch.full((len(paths), emb.shape[-1]), float("nan"))
                out[idx] = emb
                bar.update(len(idx))
    finally:
        bar.close()
        embedder.train(was_training)
    if out is None:  # only with `failures`: nothing could be read
        return torch.empty(len(paths), 0)
    return out
