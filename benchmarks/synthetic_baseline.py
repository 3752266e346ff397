"""Naive speaker-verification baseline on a synthetic corpus, and its generation time.

    python benchmarks/synthetic_baseline.py [--preset default] [--out DIR] [--seed 0]
        [--jobs J] [--channel_strength 1.0] [--trials veri_test2.txt ...] [--lda]

Generates the corpus (unless DIR already holds it, then the run only completes it),
then scores the VoxCeleb1-O-style trials (meta/veri_test2.txt; also E and H) with the cosine of
per-utterance [mean, std] MFCC vectors (20 MFCCs c1..c20 from 40 log-mel bands,
25 ms / 10 ms frames; each dimension z-normalised over the scored files) and prints
the EER. No training: it says how much channel variation the corpus holds (too easy
below ~15 %, too hard above ~40 %; the default preset aims at 20-35 %). --lda adds
the simplest trained reference (LDA on the VoxCeleb2 part's vectors), which should do
clearly better, showing that channel-independent speaker information is there to learn.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.fft import dct, rfft
from scipy.linalg import eigh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lowres.io.audio_headers import SAMPLE_RATE  # noqa: E402
from lowres.scoring.metrics import eer  # noqa: E402
from prepare.synthetic.corpus import PRESETS, generate  # noqa: E402


def mel_filterbank(n_fft: int = 512, n_mels: int = 40) -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(mel(20), mel(SAMPLE_RATE / 2), n_mels + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


FBANK = mel_filterbank()


def mean_std_mfcc(path: Path) -> np.ndarray:
    x, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE, f"{path}: {rate} Hz"
    return mean_std_mfcc_of(x)


def mean_std_mfcc_of(x: np.ndarray) -> np.ndarray:
    """[mean, std] over frames of MFCCs c1..c20 of a 16 kHz waveform."""
    win, hop = 400, 160
    n = 1 + max(0, len(x) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n] * np.hamming(win)
    power = np.abs(rfft(frames, 512)) ** 2
    mfcc = dct(np.log(power @ FBANK.T + 1e-10), norm="ortho", axis=1)[:, 1:21]
    return np.concatenate([mfcc.mean(0), mfcc.std(0)])


def m4a_features(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
                         capture_output=True, check=True).stdout
    return mean_std_mfcc_of(np.frombuffer(raw, "<i2").astype(np.float32) / 32768)


def train_lda(corpus: Path, dims: int = 20, jobs: int = 1) -> np.ndarray:
    """LDA projection learnt from the VoxCeleb2 speakers' mean+std MFCC vectors.

    A reference, not a baseline: the simplest *trained* system. If it beats the
    untrained cosine clearly, the corpus holds channel-independent speaker information.
    """
    paths = sorted((corpus / "voxceleb2" / "dev" / "aac").rglob("*.m4a"))
    with mp.Pool(jobs) as pool:
        feats = np.stack(pool.map(m4a_features, paths, chunksize=16))
    speakers = np.array([p.parts[-3] for p in paths])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    within, between = np.zeros((feats.shape[1],) * 2), np.zeros((feats.shape[1],) * 2)
    for spk in np.unique(speakers):
        group = feats[speakers == spk]
        centred = group - group.mean(0)
        within += centred.T @ centred
        between += len(group) * np.outer(group.mean(0), group.mean(0))
    _, vectors = eigh(between, within + 1e-3 * np.eye(len(within)))
    return vectors[:, -dims:]


def baseline_eer(corpus: Path, trials_name: str = "veri_test2.txt",
                 projection: np.ndarray | None = None) -> tuple[float, int]:
    """EER (fraction) of the mean+std MFCC cosine baseline, and the number of trials.

    With `projection` (from `train_lda`), scores the LDA-projected vectors instead.
    """
    lines = [ln.split() for ln in (corpus / "meta" / trials_name).read_text().splitlines()]
    files = sorted({p for _, a, b in lines for p in (a, b)})
    feats = np.stack([mean_std_mfcc(corpus / "voxceleb1" / "wav" / f) for f in files])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    if projection is not None:
        feats = feats @ projection
        feats -= feats.mean(0)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    index = {f: i for i, f in enumerate(files)}
    scores = np.array([feats[index[a]] @ feats[index[b]] for _, a, b in lines])
    labels = np.array([int(label) for label, _, _ in lines])
    return eer(scores, labels).eer, len(lines)


def _cpu_seconds() -> float:
    """CPU time of this process and all its finished descendants (pool workers, ffmpeg...)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--out", type=Path, help="corpus folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--channel_strength", type=float, default=1.0)
    parser.add_argument("--trials", nargs="+", default=["veri_test2.txt", "list_test_all2.txt",
                                                         "list_test_hard2.txt"])
    parser.add_argument("--lda", action="store_true",
                        help="also score with an LDA trained on the VoxCeleb2 part (a trained "
                        "reference; decodes every m4a, so slower)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "corpus"
        start, cpu = time.time(), _cpu_seconds()
        counts = generate(out, dict(PRESETS[args.preset]), args.seed, args.jobs,
                          args.channel_strength)
        gen_seconds, gen_cpu = time.time() - start, _cpu_seconds() - cpu
        start = time.time()
        results = [(name, *baseline_eer(out, name)) for name in args.trials]
        if args.lda:
            projection = train_lda(out, jobs=args.jobs)
            results += [(f"{name} [LDA on vox2, reference]", *baseline_eer(out, name, projection))
                        for name in args.trials]
        score_seconds = time.time() - start
    print("== synthetic corpus baseline (SYNTHETIC data) ==")
    print(f"preset {args.preset}, seed {args.seed}, channel strength {args.channel_strength}, "
          f"jobs {args.jobs} ({os.cpu_count()} cores)")
    print(f"generation: {gen_seconds:.1f} s wall, {gen_cpu:.1f} s CPU (all processes; "
          f"/2 = {gen_cpu / 2:.1f} s on 2 idle cores) for {counts['vox2_files']} vox2 files "
          f"({counts['vox2_hours']} h) + {counts['vox1_files']} vox1 files; "
          f"{counts['sessions_generated']} sessions generated now (0: corpus was already there); "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, value, n_trials in results:
        print(f"cosine of mean+std MFCC on {name}: {n_trials} trials, EER {100 * value:.2f} %")
    print(f"(scored in {score_seconds:.1f} s)")


if __name__ == "__main__":
    main()
