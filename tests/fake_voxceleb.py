"""A tiny VoxCeleb-shaped tree for the preparation tests (numpy + soundfile + ffmpeg).

Not a corpus to train on: sine tones with the official folder layout, meta
files in their official (awkward) formats, and trial lists.  Built in about a
second; m4a files are one ffmpeg encode copied to every path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SR = 16000
# The study's published lists (and vox2_meta.csv), in shared/ beside the checkout as in CI.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def speaker_plan(n_speakers: int = 12, seed: int = 0) -> dict[str, dict]:
    """Speaker -> {gender, sessions: {session: n_files}} with uneven sizes."""
    rng = np.random.default_rng(seed)
    plan = {}
    for i in range(n_speakers):
        spk = f"id{i + 10:05d}"
        n_ses = int(rng.integers(2, 7))
        sessions = {f"s{i:02d}{chr(97 + j)}{'x' * j}": int(rng.integers(1, 7))
                    for j in range(n_ses)}
        plan[spk] = {"gender": "m" if i % 2 == 0 else "f", "sessions": sessions}
    return plan


def write_wav(path: Path, seconds: float, freq: float = 220.0, sr: int = SR,
              channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.1 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr, subtype="PCM_16")


def make_tree(root: Path, plan: dict | None = None, m4a: bool = False,
              vox1_speakers: int = 6) -> dict:
    """Write the fake tree under ``root``; returns the plan used."""
    plan = plan or speaker_plan()
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    # vox2 meta in the official padded format with a byte-order mark
    lines = ["\ufeffVoxCeleb2 ID,VGGFace2 ID,Gender,Set"]
    lines += [f"{spk} ,n{spk[2:]} ,{p['gender']} ,dev " for spk, p in plan.items()]
    (meta / "vox2_meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if m4a:
        proto = root / "proto.m4a"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "sine=frequency=300:sample_rate=44100:duration=0.6", "-ac", "2",
                        "-c:a", "aac", str(proto)], check=True)
    n = 0
    for spk, p in plan.items():
        for ses, n_files in p["sessions"].items():
            for u in range(n_files):
                n += 1
                rel = Path(spk) / ses / f"{u + 1:05d}"
                if m4a:
                    dst = root / "voxceleb2/dev/aac" / rel.with_suffix(".m4a")
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(proto, dst)
                else:
                    write_wav(root / "voxceleb2/dev/wav" / rel.with_suffix(".wav"),
                              0.2 + 0.01 * (n % 17))
    # VoxCeleb1: tab-separated meta, wavs, three trial lists
    v1 = [f"id1{i:04d}" for i in range(vox1_speakers)]
    rows = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    rows += [f"{s}\tName_{i}\t{'m' if i % 2 == 0 else 'f'}\tUSA\ttest" for i, s in enumerate(v1)]
    (meta / "vox1_meta.csv").write_text("\n".join(rows) + "\n")
    files = []
    for i, s in enumerate(v1):
        for u in range(3):
            rel = f"{s}/yt{i}/{u + 1:05d}.wav"
            write_wav(root / "voxceleb1/wav" / rel, 0.3 + 0.05 * u, freq=200 + 10 * i)
            files.append(rel)
    trials = []
    for i, a in enumerate(files):
        b_same = files[(i // 3) * 3 + (i + 1) % 3]
        b_diff = files[(i + 3) % len(files)]
        trials += [f"1 {a} {b_same}", f"0 {a} {b_diff}"]
    for name, sl in (("veri_test2.txt", trials[:12]), ("list_test_all2.txt", trials),
                     ("list_test_hard2.txt", trials[::2] + trials[1::4])):
        (meta / name).write_text("\n".join(sl) + "\n")
    return plan


def plan_listing(plan: dict) -> pd.DataFrame:
    """The listing a plan describes (no audio): ID, spk_id, session, utt, duration, gender, wav."""
    rows = []
    for spk, p in plan.items():
        for ses, n_files in p["sessions"].items():
            for u in range(n_files):
                utt = f"{u + 1:05d}"
                rows.append((f"{spk}/{ses}/{utt}", spk, ses, utt, 1.0 + u, p["gender"],
                             f"/x/{spk}/{ses}/{utt}.wav"))
    return pd.DataFrame(rows, columns=["ID", "spk_id", "session", "utt", "duration", "gender",
                                       "wav"])


def random_plan(n_speakers: int, seed: int, max_sessions: int = 12,
                max_files: int = 12) -> dict:
    """A larger uneven plan for rule tests on listings (no audio is written)."""
    rng = np.random.default_rng(seed)
    plan = {}
    for i in range(n_speakers):
        n_ses = int(rng.integers(1, max_sessions + 1))
        sessions = {f"S{i}_{j}": int(rng.integers(1, max_files + 1)) for j in range(n_ses)}
        plan[f"id{i:05d}"] = {"gender": "mf"[int(rng.integers(2))], "sessions": sessions}
    return plan
