"""Scale benchmark of the VoxCeleb preparation (split + subsets + trials + manifests).

Builds a simulated VoxCeleb2-dev listing of the real size (5,994 speakers,
4-89 sessions per speaker with mean 22.8, mean 7.8 files per session, about
1.07M files; genders from the real vox2_meta.csv dev rows when it is found,
else 61% male) and times the stages that run after the listing, writing all
manifests to a temporary folder.  Target: under 2 minutes on 2 cores.

    python benchmarks/prepare_scale.py [--speakers 5994] [--keep DIR] [--headers 2000]

Also timed, outside the total: writing and re-reading the listing cache, and
(with --headers N) reading N wav headers, extrapolated to the listing's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lowres.io import lists
from lowres.io.audio import SAMPLE_RATE
from prepare import manifests
from prepare.split import split_validation
from prepare.subsets import (
    select_full,
    select_tiny_few,
    select_tiny_many,
    subset_val,
    write_subset_list,
)
from prepare.trials import make_val_trials

REFERENCE_META = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vox2_meta.csv"
ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))


def simulated_listing(n_speakers: int = 5994, seed: int = 0) -> pd.DataFrame:
    """A listing shaped like VoxCeleb2 dev (see module doc)."""
    rng = np.random.default_rng(seed)
    # sessions per speaker: 4 + negative binomial (mean 18.8, long tail), capped at 89
    sessions = np.minimum(4 + rng.negative_binomial(2, 2 / (2 + 18.8), n_speakers), 89)
    n_ses = int(sessions.sum())
    # files per session: 1 + negative binomial (mean 6.8)
    files = 1 + rng.negative_binomial(1.5, 1.5 / (1.5 + 6.8), n_ses)
    # like the real data, every speaker has a few dozen files at least
    ses_spk = np.repeat(np.arange(n_speakers), sessions)
    short = np.bincount(ses_spk, weights=files, minlength=n_speakers) < 24
    files[short[ses_spk]] += 4
    n = int(files.sum())
    if REFERENCE_META.is_file():
        from prepare.meta import read_meta

        meta = read_meta(REFERENCE_META)
        meta = meta[meta.set == "dev"].reset_index(drop=True)
        spk_ids = meta.spk_id.to_numpy()[np.arange(n_speakers) % len(meta)]
        genders = meta.gender.to_numpy()[np.arange(n_speakers) % len(meta)]
        if n_speakers > len(meta):
            spk_ids = np.array([f"id{i:05d}" for i in range(n_speakers)])
    else:
        spk_ids = np.array([f"id{i:05d}" for i in range(n_speakers)])
        genders = np.where(rng.random(n_speakers) < 0.61, "m", "f")
    ses_names = np.array(["".join(r) for r in ALPHABET[rng.integers(0, 64, (n_ses, 11))]])
    file_ses = np.repeat(np.arange(n_ses), files)
    # utterance numbers run per speaker: 00001, 00002, ...
    first_of_spk = np.repeat(np.r_[0, np.cumsum(np.bincount(ses_spk[file_ses],
                                                            minlength=n_speakers))[:-1]],
                             np.bincount(ses_spk[file_ses], minlength=n_speakers))
    utt = np.arange(n) - first_of_spk + 1
    spk = pd.Series(spk_ids[ses_spk[file_ses]], dtype=object)
    ses = pd.Series(ses_names[file_ses], dtype=object)
    utt_s = pd.Series(np.char.zfill(utt.astype(str), 5), dtype=object)
    ids = spk + "/" + ses + "/" + utt_s
    return pd.DataFrame({
        "ID": ids, "spk_id": spk, "session": ses, "utt": utt_s,
        "duration": np.round(4 + rng.gamma(2.0, 2.0, n), 4),
        "gender": genders[ses_spk[file_ses]],
        "wav": "/data/voxceleb2/dev/wav/" + ids + ".wav",
    })


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speakers", type=int, default=5994)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--keep", help="write the manifests here instead of a temporary folder")
    p.add_argument("--headers", type=int, default=0,
                   help="also time reading N wav headers (written first) with --jobs threads")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()

    t0 = time.perf_counter()
    listing = simulated_listing(args.speakers)
    t_sim = time.perf_counter() - t0
    ses = listing.groupby("spk_id").session.nunique()
    fps = listing.groupby(["spk_id", "session"]).size()
    print(f"simulated listing: {len(listing):,} files, {listing.spk_id.nunique():,} speakers, "
          f"{len(fps):,} sessions (per speaker {ses.min()}-{ses.max()}, mean {ses.mean():.1f}; "
          f"files per session mean {fps.mean():.2f}) in {t_sim:.1f} s")

    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="prepare_scale_"))
    times: dict[str, float] = {}
    total0 = time.perf_counter()
    t = time.perf_counter()
    is_val = split_validation(listing, 0.01, args.seed)
    train, val = listing[~is_val], listing[is_val]
    times["split"] = time.perf_counter() - t
    print(f"split: {len(train):,} train / {len(val):,} val files, "
          f"{val.groupby(['spk_id', 'session']).ngroups:,} val sessions")

    rules = {
        "full": (lambda: select_full(train), 30000),
        "tiny_few": (lambda: select_tiny_few(train, 50), 2000),
        "tiny_many_low": (lambda: select_tiny_many(train, 8, 8, args.seed), 2000),
        "tiny_many_high": (lambda: select_tiny_many(train, 8, 1, args.seed), 2000),
    }
    rows = []
    for name, (select, n_trials) in rules.items():
        t = time.perf_counter()
        sub = select()
        sub_val = subset_val(val, sub)
        t_sel = time.perf_counter() - t
        t = time.perf_counter()
        trials = make_val_trials(sub_val, n_trials, args.seed, name=name)
        t_tri = time.perf_counter() - t
        t = time.perf_counter()
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        lists.write_manifest(folder / "train.csv", sub)
        lists.write_manifest(folder / "val.csv", sub_val)
        lists.write_trials(folder / "val_trials.txt", trials)
        stats = manifests.subset_stats(sub, sub_val, trials)
        manifests.write_json_stats(folder / "stats.json", stats)
        write_subset_list(folder / f"{name}_utterance_list.csv", sub, sub_val)
        t_man = time.perf_counter() - t
        times[f"{name}: select"] = t_sel
        times[f"{name}: trials"] = t_tri
        times[f"{name}: manifests"] = t_man
        s = stats["train"]
        rows.append((name, s["files"], s["speakers"], s["sessions"], s["hours"],
                     s["sessions_per_speaker"]["min"], s["sessions_per_speaker"]["max"],
                     s["sessions_per_speaker"]["mean"], stats["val"]["files"],
                     stats["val_trials"]["trials"]))
    total = time.perf_counter() - total0

    print("\n{:<15} {:>10} {:>8} {:>9} {:>9} {:>14} {:>9} {:>7}".format(
        "subset", "files", "speakers", "sessions", "hours", "ses/spk", "val", "trials"))
    for name, f, sp, se, h, smin, smax, smean, v, tr in rows:
        print(f"{name:<15} {f:>10,} {sp:>8,} {se:>9,} {h:>9.1f} "
              f"{f'{smin}-{smax} ({smean:.2f})':>14} {v:>9,} {tr:>7,}")
    print("\ntimings (s):")
    for k, v in times.items():
        print(f"  {k:<26} {v:6.2f}")
    print(f"  {'TOTAL':<26} {total:6.2f}   (target < 120 s)")
    extra = {}
    t = time.perf_counter()
    listing.to_csv(out / "listing.csv", index=False)
    extra["listing cache write"] = time.perf_counter() - t
    t = time.perf_counter()
    pd.read_csv(out / "listing.csv", dtype=str, keep_default_na=False)
    extra["listing cache read"] = time.perf_counter() - t
    if args.headers:
        import soundfile as sf

        from lowres.io.audio_headers import read_durations

        wavs = out / "wavs"
        wavs.mkdir()
        x = np.zeros(SAMPLE_RATE * 3, dtype=np.int16)
        paths = [str(wavs / f"{i}.wav") for i in range(args.headers)]
        for p_ in paths:
            sf.write(p_, x, SAMPLE_RATE, subtype="PCM_16")
        t = time.perf_counter()
        read_durations(paths, args.jobs)
        dt = time.perf_counter() - t
        extra[f"{args.headers} wav headers"] = dt
        extra[f"-> {len(listing):,} headers (extrapolated)"] = dt * len(listing) / args.headers
    for k, v in extra.items():
        print(f"  {k:<26} {v:6.2f}   (not in total)")
    print(json.dumps({"files": len(listing), "total_s": round(total, 2)}))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
