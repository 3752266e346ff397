"""Embeddings of any list of recordings: ``python -m lowres.embed RUN --wav_list FILE --out OUT``.

The list (``--wav_list``) holds one recording per line, in one of two forms:

* a path per line (its id is the path as written), or
* Kaldi's ``wav.scp``: ``utt_id path`` (the id, then the rest of the line is the path).

It is a ``wav.scp`` when every entry has two or more whitespace-separated fields, else
every line is one path.  Blank lines and lines starting with ``#`` are skipped; relative
paths are relative to the current folder (as in Kaldi); Kaldi pipe commands
(``utt_id sox ... |``) are not run: those entries are reported as unreadable.

Audio: any format, sample rate and channel count that soundfile reads; channels are
averaged to mono and the signal resampled to 16 kHz by torchaudio's windowed-sinc
``resample`` (its defaults), the reader of the evaluation
(:func:`lowres.io.audio.load_audio`).  Whole files, batched by length (longest
first) with a progress bar, under the run's best (or last) checkpoint
(:meth:`lowres.scoring.speaker_verifier.SpeakerVerifier.from_run`).

Output, by the extension of ``--out``:

* ``.npz``: ``ids`` (str, [N]) and ``embeddings`` (float32, [N, D]) in list order, for
  ``numpy.load(OUT)``;
* ``.ark``: a Kaldi archive of float32 vectors plus ``OUT.scp`` beside it (kaldiio), for
  ``kaldiio.load_scp`` or Kaldi's own tools (``copy-vector scp:OUT.scp ark,t:-``).

Embeddings are the embedder's raw output; compare them by cosine similarity, as the
evaluation does.  A file that cannot be read (missing, not audio, empty) is skipped: the
skipped ones are listed at the end and in ``OUT`` with ``.failed.txt`` for its extension
(``utt_id<TAB>path<TAB>reason`` per line; written every time, empty when none failed).
Every file is written atomically.

Exit status: 0 all embedded; 1 some (or all) could not be read, the rest is written;
2 bad arguments (run folder, list, an output that cannot be written, device), found before
any embedding.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from lowres.io.atomic import atomic_path, write_text
from lowres.io.hparams import HparamsError
from lowres.io.lists import ListError
from lowres.io.outputs import check_output_file
from lowres.scoring.batch_embedding import extract_embeddings
from prepare.errors import USER_ERRORS

__all__ = ["OUTPUT_FORMATS", "embed_entries", "failures_path", "main", "read_wav_list",
           "write_embeddings"]

OUTPUT_FORMATS = (".npz", ".ark")


def read_wav_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(utt_id, path)`` per entry of a path list or ``wav.scp`` (see the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ListError(f"cannot read the wav list {path}: {err}") from err
    lines = [ln.strip() for ln in lines]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ListError(f"wav list {path} has no entries")
    if all(len(ln.split(maxsplit=1)) == 2 for ln in lines):
        entries = [tuple(ln.split(maxsplit=1)) for ln in lines]
    else:
        entries = [(ln, ln) for ln in lines]
    seen: set[str] = set()
    for n, (utt, _) in enumerate(entries, 1):
        if utt in seen:
            raise ListError(f"wav list {path}: id {utt!r} appears more than once "
                            f"(again in entry {n})")
        seen.add(utt)
    return entries


def embed_entries(embedder, entries: list[tuple[str, str]], device="cpu",
                  **extract_options) -> tuple[list[str], np.ndarray, list[tuple[str, str, str]]]:
    """Embed every entry that can be read.

    Returns ``(ids, embeddings [N, D] float32, failures)`` with the ids and rows of the
    readable entries in list order and ``(utt_id, path, reason)`` for the others.  A
    file named by several ids is embedded once.  ``extract_options`` go to
    :func:`lowres.scoring.batch_embedding.extract_embeddings` (batch_size, max_batch_seconds,
    num_workers, progress).
    """
    failures: list[tuple[str, str, str]] = []
    wanted = []
    for utt, p in entries:
        if p.endswith("|"):
            failures.append((utt, p, "Kaldi pipe commands are not supported: convert the "
                                     "audio to a file first"))
        else:
            wanted.append((utt, p))
    unique = list(dict.fromkeys(p for _, p in wanted))
    unreadable: dict[str, str] = {}
    emb = (extract_embeddings(embedder, unique, device=device, failures=unreadable,
                              **extract_options).numpy() if unique else np.empty((0, 0)))
    row = {p: i for i, p in enumerate(unique)}
    ids, rows = [], []
    for utt, p in wanted:
        if p in unreadable:
            failures.append((utt, p, unreadable[p]))
        else:
            ids.append(utt)
            rows.append(row[p])
    order = {utt: n for n, (utt, _) in enumerate(entries)}
    failures.sort(key=lambda f: order[f[0]])
    return ids, emb[rows].astype(np.float32), failures


def write_embeddings(out: str | os.PathLike, ids: list[str], embeddings: np.ndarray) -> list[Path]:
    """Write ``.npz`` (ids, embeddings) or ``.ark`` + ``.scp``; returns the paths written."""
    out = Path(out)
    if out.suffix == ".npz":
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, ids=np.array(ids, dtype=str), embeddings=embeddings)
        return [out]
    if out.suffix != ".ark":
        raise ValueError(f"output must end with one of {OUTPUT_FORMATS}, got {out}")
    import kaldiio

    scp = out.with_suffix(".scp")
    with atomic_path(out) as tmp_ark, atomic_path(scp) as tmp_scp:
        kaldiio.save_ark(os.fspath(tmp_ark), dict(zip(ids, embeddings, strict=True)),
                         scp=os.fspath(tmp_scp))
        # kaldiio names the temporary archive; point the index at the final one.
        lines = []
        for line in tmp_scp.read_text(encoding="utf-8").splitlines():
            utt, location = line.split(" ", 1)
            lines.append(f"{utt} {os.fspath(out)}:{location.rsplit(':', 1)[1]}\n")
        tmp_scp.write_text("".join(lines), encoding="utf-8")
    return [out, scp]


def failures_path(out: str | os.PathLike) -> Path:
    """``OUT`` with ``.failed.txt`` in place of its extension."""
    return Path(out).with_suffix(".failed.txt")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lowres.embed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (train.py's --output_folder)")
    ap.add_argument("--wav_list", required=True, help="paths, one per line, or a wav.scp")
    ap.add_argument("--out", required=True, help="OUT.npz, or OUT.ark (+ OUT.scp)")
    ap.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch_size", type=int, help="files per batch (default 16)")
    ap.add_argument("--max_batch_seconds", type=float,
                    help="padded seconds of audio per batch (default 400)")
    ap.add_argument("--num_workers", type=int, default=0, help="audio reading processes")
    ap.add_argument("--noprogressbar", action="store_true")
    args = ap.parse_args(argv)
    if Path(args.out).suffix not in OUTPUT_FORMATS:
        ap.error(f"--out must end with one of {', '.join(OUTPUT_FORMATS)}, got {args.out}")
    if args.batch_size is not None and args.batch_size < 1:
        ap.error(f"--batch_size must be >= 1, got {args.batch_size}")
    from lowres.scoring.speaker_verifier import SpeakerVerifier

    try:
        check_output_file(args.out, "--out")  # before the embeddings, not after
        entries = read_wav_list(args.wav_list)
        verifier = SpeakerVerifier.from_run(args.run, args.checkpoint, args.device)
    except (*USER_ERRORS, HparamsError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = {k: getattr(args, k) for k in ("batch_size", "max_batch_seconds")
               if getattr(args, k) is not None}
    ids, emb, failures = embed_entries(
        verifier.embedder, entries, verifier.device, num_workers=args.num_workers,
        progress=False if args.noprogressbar else "embeddings", **options)
    written = write_embeddings(args.out, ids, emb)
    failed_file = failures_path(args.out)
    write_text(failed_file, "".join(f"{u}\t{p}\t{r}\n" for u, p, r in failures))
    dim = emb.shape[1] if emb.ndim == 2 else 0
    print(f"{len(ids)} of {len(entries)} recordings embedded ({dim}-dim) -> "
          + ", ".join(map(str, written)))
    if failures:
        print(f"{len(failures)} could not be read (listed in {failed_file}):", file=sys.stderr)
        for utt, p, reason in failures:
            print(f"  {utt}  {p}: {reason}" if utt != p else f"  {p}: {reason}",
                  file=sys.stderr)
        return 1
    return 0
