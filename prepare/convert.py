"""Stage 1: VoxCeleb2 m4a (AAC) -> 16 kHz mono 16-bit wav with ffmpeg, in parallel.

Each file is decoded into ``<utt>.wav.partial`` and renamed to ``<utt>.wav``
only when ffmpeg succeeded, so an interrupted run never leaves a truncated
wav; a rerun skips every wav that exists and removes stale partial files.
Starting ffmpeg costs more than decoding a VoxCeleb utterance, so one ffmpeg
process decodes a batch of files (inputs mapped to outputs one to one; the
output is byte-identical to one call per file); when a batch fails, its files
are converted one by one to name the file at fault.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from lowres.io.atomic import folder_lock
from lowres.io.audio_headers import SAMPLE_RATE
from lowres.io.progress import progress
from prepare.errors import PrepareError

PARTIAL = ".partial"
BATCH = 32
OUTPUT_ARGS = ["-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav"]
FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def find_audio(root: str | os.PathLike, ext: str) -> list[Path]:
    """All ``root/<spk>/<session>/<utt>.<ext>`` files, sorted (scandir, no stat calls)."""
    root = Path(root)
    found = []
    for spk in sorted(os.scandir(root), key=lambda e: e.name):
        if not spk.is_dir():
            continue
        for ses in sorted(os.scandir(spk.path), key=lambda e: e.name):
            if not ses.is_dir():
                continue
            found.extend(
                Path(f.path) for f in sorted(os.scandir(ses.path), key=lambda e: e.name)
                if f.name.endswith("." + ext)
            )
    return found


def convert_file(src: Path, dst: Path) -> None:
    """Decode one m4a into a 16 kHz mono wav at ``dst`` (atomically)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + PARTIAL)
    cmd = [*FFMPEG, "-i", str(src), "-vn", *OUTPUT_ARGS, str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size <= 44:
        tmp.unlink(missing_ok=True)
        reason = (proc.stderr.strip().splitlines() or ["no audio decoded"])[-1]
        raise PrepareError(f"cannot convert {src} (corrupt or not audio?): {reason}")
    os.replace(tmp, dst)


def convert_batch(pairs: list[tuple[Path, Path]]) -> int:
    """Convert (src, dst) pairs with one ffmpeg process; one by one if that fails."""
    if len(pairs) == 1:
        convert_file(*pairs[0])
        return 1
    tmps = [dst.with_name(dst.name + PARTIAL) for _, dst in pairs]
    cmd = list(FFMPEG)
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["-i", str(src)]
    for k, tmp in enumerate(tmps):
        cmd += ["-map", f"{k}:a:0", *OUTPUT_ARGS, str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0 and all(t.exists() and t.stat().st_size > 44 for t in tmps):
        for tmp, (_, dst) in zip(tmps, pairs, strict=True):
            os.replace(tmp, dst)
        return len(pairs)
    for tmp in tmps:
        tmp.unlink(missing_ok=True)
    for src, dst in pairs:
        convert_file(src, dst)
    return len(pairs)


def remove_partials(wav_root: Path) -> int:
    """Delete ``*.wav.partial`` files left behind by an interrupted conversion."""
    n = 0
    if wav_root.is_dir():
        for p in wav_root.glob("*/*/*" + PARTIAL):
            p.unlink(missing_ok=True)
            n += 1
    return n


def convert_voxceleb2(aac_root: str | os.PathLike, wav_root: str | os.PathLike,
                      jobs: int = 1, batch: int = BATCH) -> int:
    """Convert every ``aac_root/<spk>/<session>/<utt>.m4a`` to ``wav_root/...wav``.

    Already converted files are skipped.  Returns the number of m4a files.
    Raises :class:`PrepareError` naming the first file ffmpeg cannot decode.
    """
    aac_root, wav_root = Path(aac_root), Path(wav_root)
    if shutil.which("ffmpeg") is None:
        raise PrepareError("ffmpeg not found on PATH (needed to convert VoxCeleb2 m4a to wav)")
    with folder_lock(wav_root, ".convert.lock"):  # one converter per wav folder at a time
        return _convert_all(aac_root, wav_root, jobs, max(1, batch))


def _convert_all(aac_root: Path, wav_root: Path, jobs: int, batch: int) -> int:
    remove_partials(wav_root)
    sources = find_audio(aac_root, "m4a")
    todo = []
    for src in sources:
        dst = wav_root / src.relative_to(aac_root).with_suffix(".wav")
        if not dst.exists():
            todo.append((src, dst))
    if not todo:
        return len(sources)
    # batches no larger than an even share per worker, so small jobs still run in parallel
    batch = max(1, min(batch, -(-len(todo) // max(1, jobs))))
    batches = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(convert_batch, b) for b in batches]
        try:
            bar = progress(total=len(todo), desc="convert m4a->wav", unit="file")
            for fut in as_completed(futures):
                bar.update(fut.result())
            bar.close()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return len(sources)
