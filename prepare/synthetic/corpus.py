"""A SYNTHETIC VoxCeleb-shaped corpus, laid out like the official archives.

    python -m prepare.synthetic --out DIR [--preset small|default|large]
        [--speakers N] [--sessions S] [--utterances U] [--seed K] [--jobs J]
        [--augment_sets]

writes
    DIR/voxceleb2/dev/aac/<id0xxxx>/<session>/<nnnnn>.m4a   (AAC, 16 kHz mono)
    DIR/voxceleb1/wav/<id1xxxx>/<session>/<nnnnn>.wav       (16 kHz mono, 16 bit)
    DIR/meta/vox1_meta.csv, vox2_meta.csv                   (official formats)
    DIR/meta/veri_test2.txt, list_test_all2.txt, list_test_hard2.txt
    DIR/meta/synthetic_speakers.csv, synthetic_sessions.csv (voice / channel of each)
    DIR/README.txt                                          (says: synthetic)
    DIR/musan/, DIR/RIRS_NOISES/  (--augment_sets) stand-ins for the augmentation
        collections, in their real layouts (prepare.synthetic.augment_sets)
    DIR/unlabelled/<un0xxxx>/<session>/<nnnnn>.wav  (--unlabelled_speakers N) speech of N
        further speakers, none of them a VoxCeleb1/2 speaker of the corpus, for
        self-supervised pre-training (the stand-in for LibriSpeech; no labels are written)

Speakers are random espeak-ng voices (prepare/synth_voices.py), sessions random
recording channels (prepare/synth_channel.py), utterances cuts of 3-10 s (VoxCeleb1-style
files of the default preset: 2-5 s, PRESETS) of a session's continuous speech of random
sentences (prepare/synth_text.py).
Sessions per speaker and files per session are uneven (skewed towards few,
with a long tail), like the real data. The output is deterministic for a
seed on a given machine, whatever --jobs; every file is written atomically
and a rerun skips the sessions already complete (resumable).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import os
import shutil
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lowres.io.atomic import remove_stale_temporaries, write_text
from lowres.io.audio_headers import SAMPLE_RATE
from lowres.io.corpus_notice import NOTICE
from lowres.io.lists import TRIAL_COLUMNS, write_trials
from lowres.io.progress import progress as progress_bar
from prepare.synthetic.augment_sets import generate_augment_sets
from prepare.synthetic.channel import apply_channel, random_channel
from prepare.synthetic.io import write_m4as, write_wavs
from prepare.synthetic.trials import TrialSpeaker, make_trials, same_gender_and_nationality
from prepare.synthetic.voices import NATIONALITIES, random_voice, speak_for

# Sizes. vox2: training speakers (VoxCeleb2 dev); vox1: test speakers (VoxCeleb1),
# of which vox1_test form the VoxCeleb1-O ("test" set) speakers.
# sessions = most sessions a speaker has (at least min_sessions),
# utterances = most files a session has (at least 1), min_files = fewest files a speaker has,
# vox1_seconds = the shortest and longest VoxCeleb1-style file (VoxCeleb2-style: SECONDS).
# default's test part is sized for the speaker bootstrap (docs/intervals.md): an interval
# narrows with more test speakers and with more trials of each, and embedding costs a file's
# length each time a model is evaluated, so 200 VoxCeleb1-style speakers with 6 short files
# (2-5 s) in 2-3 sessions (1,200 files; E and H 4,800 trials), of which 40 form O (as in
# VoxCeleb1-O; 960 trials).
PRESETS = {
    "small": dict(speakers=16, sessions=10, utterances=4, min_files=12,
                  vox1_speakers=10, vox1_test=6, vox1_sessions=4, vox1_utterances=3,
                  vox1_min_files=8, vox1_seconds=[3.0, 10.0]),
    "default": dict(speakers=100, sessions=12, utterances=5, min_files=10,
                    vox1_speakers=200, vox1_test=40, vox1_sessions=3, vox1_utterances=2,
                    vox1_min_files=6, vox1_seconds=[2.0, 5.0]),
    "large": dict(speakers=1000, sessions=20, utterances=8, min_files=16,
                  vox1_speakers=200, vox1_test=40, vox1_sessions=10, vox1_utterances=5,
                  vox1_min_files=8, vox1_seconds=[3.0, 10.0]),
}
MIN_SESSIONS = 2
SECONDS = (3.0, 10.0)  # shortest and longest file of the VoxCeleb2-style and unlabelled parts
TRIALS_PER_FILE = 8
# per unlabelled speaker: <= 3 sessions of <= 3 files, >= 4 files (~25 s of speech)
UNLABELLED_SIZES = dict(max_sessions=3, max_utts=3, min_files=4)
_STREAMS = {"vox1": 1, "vox2": 2, "unlabelled": 3}  # seed stream of each part's voices
VOX1_HEADER = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"
VOX2_HEADER = "\ufeffVoxCeleb2 ID,VGGFace2 ID,Gender,Set"
_ID_CHARS = string.ascii_letters + string.digits + "-_"


@dataclass
class Session:
    name: str
    durations: list  # seconds, one per file


@dataclass
class Speaker:
    corpus: str  # "vox1" | "vox2" | "unlabelled"
    index: int
    spk_id: str
    gender: str
    nationality: str
    split: str  # "dev" | "test"
    name: str
    sessions: list = field(default_factory=list)


def _uneven(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high], skewed towards low with a long tail."""
    return low + int(np.floor((high - low + 1) * rng.random() ** 2))


def _session_ids(rng: np.random.Generator, n: int) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:
        ids.add("".join(_ID_CHARS[i] for i in rng.integers(len(_ID_CHARS), size=11)))
    return sorted(ids)


def _fake_name(rng: np.random.Generator) -> str:
    syll = ["ka", "lo", "mi", "ra", "te", "su", "an", "el", "or", "vi", "da", "ne", "jo", "ba"]
    first = "".join(rng.choice(syll, size=int(rng.integers(2, 4)))).capitalize()
    last = "".join(rng.choice(syll, size=int(rng.integers(2, 4)))).capitalize()
    return f"{first}_{last}"


def _make_sessions(rng, max_sessions: int, max_utts: int, min_files: int,
                   seconds: Sequence[float] = SECONDS) -> list[Session]:
    n_sessions = _uneven(rng, MIN_SESSIONS, max(MIN_SESSIONS, max_sessions))
    counts = [_uneven(rng, 1, max_utts) for _ in range(n_sessions)]
    while sum(counts) < min_files:  # top up the smallest speakers, still within max_utts
        open_ = [i for i, c in enumerate(counts) if c < max_utts]
        if not open_:
            counts.append(1)
            continue
        counts[open_[int(rng.integers(len(open_)))]] += 1
    names = _session_ids(rng, len(counts))
    return [
        Session(name, [round(float(seconds[0] + (seconds[1] - seconds[0]) * rng.beta(1.2, 2.2)),
                             3) for _ in range(c)])
        for name, c in zip(names, counts, strict=True)
    ]


def make_plan(sizes: dict, seed: int) -> list[Speaker]:
    """Every speaker, session and file length; cheap, deterministic for a seed."""
    rng = np.random.default_rng([seed, 0])
    speakers: list[Speaker] = []
    n2, n1 = sizes["speakers"], sizes["vox1_speakers"]
    vox2_ids = np.sort(rng.choice(np.arange(12, 10000), size=n2, replace=False))
    vox1_ids = np.sort(rng.choice(np.arange(10001, 20000), size=n1, replace=False))
    for i, num in enumerate(vox2_ids):
        gender = "m" if i % 2 == 0 else "f"
        speakers.append(Speaker("vox2", i, f"id{num:05d}", gender,
                                str(rng.choice(NATIONALITIES)), "dev", f"n{num:06d}"))
    # vox1: genders alternate; the first vox1_test speakers form the test set; nationality
    # is given in runs of 2-3 per gender so that every H non-target group has partners.
    for i, num in enumerate(vox1_ids):
        gender = "m" if i % 2 == 0 else "f"
        split = "test" if i < sizes["vox1_test"] else "dev"
        speakers.append(Speaker("vox1", i, f"id{num:05d}", gender, "", split, _fake_name(rng)))
    for gender in "mf":
        group = [s for s in speakers if s.corpus == "vox1" and s.gender == gender]
        pos = 0
        while pos < len(group):
            run = 3 if len(group) - pos in (3, 5) else 2
            nationality = str(rng.choice(NATIONALITIES))
            for s in group[pos: pos + run]:
                s.nationality = nationality
            pos += run
    for s in speakers:
        if s.corpus == "vox2":
            s.sessions = _make_sessions(rng, sizes["sessions"], sizes["utterances"],
                                        sizes["min_files"])
        else:
            s.sessions = _make_sessions(rng, sizes["vox1_sessions"], sizes["vox1_utterances"],
                                        sizes["vox1_min_files"], sizes["vox1_seconds"])
            if len(s.sessions) < 2:
                s.sessions += _make_sessions(rng, 2, 1, 1, sizes["vox1_seconds"])[:1]
    return speakers


def make_unlabelled_plan(n_speakers: int, seed: int) -> list[Speaker]:
    """The unlabelled speakers: their own seed streams, so their voices are none of the
    labelled corpus's and adding them leaves the VoxCeleb-shaped part unchanged."""
    rng = np.random.default_rng([seed, 5])
    speakers = []
    for i in range(n_speakers):
        spk = Speaker("unlabelled", i, f"un{i:05d}", "mf"[i % 2],
                      str(rng.choice(NATIONALITIES)), "unlabelled", f"un{i:05d}")
        spk.sessions = _make_sessions(rng, **UNLABELLED_SIZES)
        speakers.append(spk)
    return speakers


def utterance_paths(out: Path, spk: Speaker, sess: Session) -> list[Path]:
    if spk.corpus == "vox2":
        base, ext = out / "voxceleb2" / "dev" / "aac", "m4a"
    elif spk.corpus == "unlabelled":
        base, ext = out / "unlabelled", "wav"
    else:
        base, ext = out / "voxceleb1" / "wav", "wav"
    return [base / spk.spk_id / sess.name / f"{k:05d}.{ext}"
            for k in range(1, len(sess.durations) + 1)]


def _voice(spk: Speaker, seed: int):
    rng = np.random.default_rng([seed, 1, _STREAMS[spk.corpus], spk.index])
    return random_voice(rng, spk.gender, spk.nationality)


def _session_rng(spk: Speaker, s_index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 2, _STREAMS[spk.corpus], spk.index, s_index])


def generate_session(task) -> float:
    """Synthesise, record and cut one session; returns its seconds of audio."""
    out, spk, s_index, seed, strength = task
    sess = spk.sessions[s_index]
    rng = _session_rng(spk, s_index, seed)
    voice = _voice(spk, seed)
    channel = random_channel(rng, strength)
    speed, pitch = float(rng.uniform(0.9, 1.1)), int(rng.integers(35, 66))
    gaps = rng.uniform(0.3, 2.5, size=len(sess.durations))
    lengths = [int(round(d * SAMPLE_RATE)) for d in sess.durations]
    spans, pos = [], 0
    for gap, n in zip(gaps, lengths, strict=True):
        start = pos + int(gap * SAMPLE_RATE)
        spans.append((start, start + n))
        pos = start + n
    workdir = out / ".synthetic_tmp" / f"{spk.spk_id}_{sess.name}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        speech = speak_for(voice, pos / SAMPLE_RATE + 0.5, rng, workdir, speed, pitch)
        recorded = apply_channel(speech[: pos + SAMPLE_RATE // 2], channel, rng, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    paths = utterance_paths(out, spk, sess)
    remove_stale_temporaries(paths[0].parent)  # an interrupted run's, in this session's folder
    if spk.corpus == "vox2":
        write_m4as(paths, recorded, spans)
    else:
        write_wavs(paths, [recorded[a:b] for a, b in spans])
    return sum(sess.durations)


def session_table(speakers: list[Speaker], seed: int, strength: float) -> str:
    """The channel of every session (regenerated from the seeds, no audio needed)."""
    rows = []
    for spk in speakers:
        for k, sess in enumerate(spk.sessions):
            channel = random_channel(_session_rng(spk, k, seed), strength)
            rows.append({"spk_id": spk.spk_id, "session": sess.name,
                         "files": len(sess.durations), **channel.describe()})
    return _csv(rows)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _files(speakers: list[Speaker]) -> int:
    return sum(len(x.durations) for s in speakers for x in s.sessions)


def _hours(speakers: list[Speaker]) -> float:
    return round(sum(sum(x.durations) for s in speakers for x in s.sessions) / 3600, 3)


def write_meta(out: Path, speakers: list[Speaker], seed: int, strength: float) -> dict:
    """Meta files, trial lists, speaker/session tables and the README; returns counts."""
    meta = out / "meta"
    vox1 = [s for s in speakers if s.corpus == "vox1"]
    vox2 = [s for s in speakers if s.corpus == "vox2"]
    write_text(meta / "vox1_meta.csv", VOX1_HEADER + "\n" + "".join(
        f"{s.spk_id}\t{s.name}\t{s.gender}\t{s.nationality}\t{s.split}\n"
        for s in sorted(vox1, key=lambda s: s.spk_id)))
    # A few VoxCeleb2 *test* speakers, listed but without audio, as in the real meta file.
    rng = np.random.default_rng([seed, 3])
    used = {int(s.spk_id[2:]) for s in vox2}
    free = np.array(sorted(set(range(12, 10000)) - used))
    extra = np.sort(rng.choice(free, size=max(1, len(vox2) // 20), replace=False))
    rows = [(s.spk_id, s.name, s.gender, "dev") for s in vox2]
    rows += [(f"id{n:05d}", f"n{n:06d}", "mf"[i % 2], "test") for i, n in enumerate(extra)]
    write_text(meta / "vox2_meta.csv", VOX2_HEADER + "\n" + "".join(
        f"{a} ,{b} ,{c} ,{d} \n" for a, b, c, d in sorted(rows)))
    trial_spk = [
        TrialSpeaker(s.spk_id, s.gender, s.nationality, {
            sess.name: [f"{s.spk_id}/{sess.name}/{k:05d}.wav"
                        for k in range(1, len(sess.durations) + 1)] for sess in s.sessions})
        for s in vox1
    ]
    lists = {
        "veri_test2.txt": make_trials([t for t, s in zip(trial_spk, vox1, strict=True)
                                       if s.split == "test"],
                                      np.random.default_rng([seed, 4, 0]), TRIALS_PER_FILE),
        "list_test_all2.txt": make_trials(trial_spk, np.random.default_rng([seed, 4, 1]),
                                          TRIALS_PER_FILE),
        "list_test_hard2.txt": make_trials(trial_spk, np.random.default_rng([seed, 4, 2]),
                                           TRIALS_PER_FILE, same_gender_and_nationality),
    }
    for name, trials in lists.items():
        write_trials(meta / name, pd.DataFrame(trials, columns=list(TRIAL_COLUMNS)))
    write_text(meta / "synthetic_speakers.csv", _csv([
        {"spk_id": s.spk_id, "corpus": s.corpus, "set": s.split, "sessions": len(s.sessions),
         "files": sum(len(x.durations) for x in s.sessions), **_voice(s, seed).describe()}
        for s in speakers]))
    write_text(meta / "synthetic_sessions.csv", session_table(speakers, seed, strength))
    counts = {
        "vox2_speakers": len(vox2), "vox1_speakers": len(vox1),
        "vox2_files": _files(vox2), "vox1_files": _files(vox1), "vox2_hours": _hours(vox2),
        **{name: len(trials) for name, trials in lists.items()},
    }
    write_text(out / "README.txt", NOTICE + "\n\n" + json.dumps(counts, indent=1) + "\n")
    return counts


def generate(out: Path, sizes: dict, seed: int = 0, jobs: int | None = None,
             strength: float = 1.0, progress: bool = True) -> dict:
    """Generate (or complete) the corpus in `out`; returns its counts.

    Counts: speakers, files, hours, trials per list (as in README.txt) and
    `sessions_generated` (0 when a rerun found the corpus complete)."""
    out = Path(out)
    _check_tools()
    for folder in (out, out / "meta"):  # an interrupted write_meta's temporaries
        remove_stale_temporaries(folder)
    _check_config(out / "meta" / "synthetic_config.json",
                  {"sizes": sizes, "seed": seed, "channel_strength": strength, "version": 1})
    speakers = make_plan(sizes, seed)
    done = synthesise(out, speakers, seed, strength, jobs, progress)
    return {**write_meta(out, speakers, seed, strength), "sessions_generated": done}


def _check_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"error: prepare.synthetic needs {', '.join(missing)} on PATH "
                         "(Debian packages espeak-ng sox ffmpeg; `make setup` installs them).")


def _check_config(config_file: Path, config: dict) -> None:
    """Write ``config`` on the first run; refuse a folder made with other options."""
    if config_file.exists():
        if json.loads(config_file.read_text()) != config:
            raise SystemExit(f"error: {config_file.parent.parent} holds a synthetic corpus "
                             f"made with other options ({config_file}); use another --out "
                             "or delete it.")
    else:
        write_text(config_file, json.dumps(config, indent=1) + "\n")


def synthesise(out: Path, speakers: list[Speaker], seed: int, strength: float,
               jobs: int | None, progress: bool) -> int:
    """Write every session of ``speakers`` not complete yet; returns how many it wrote."""
    tasks = [(out, spk, k, seed, strength)
             for spk in speakers for k, sess in enumerate(spk.sessions)
             if not all(p.exists() for p in utterance_paths(out, spk, sess))]
    tasks.sort(key=lambda t: -sum(t[1].sessions[t[2]].durations))  # long first: balance
    jobs = jobs or os.cpu_count() or 1
    total = sum(sum(t[1].sessions[t[2]].durations) for t in tasks)
    bar = progress_bar(total=round(total), unit="s audio", disable=not progress,
                       desc=f"synthesising {len(tasks)} sessions")
    if jobs == 1:
        for task in tasks:
            bar.update(round(generate_session(task)))
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            for seconds in pool.imap_unordered(generate_session, tasks):
                bar.update(round(seconds))
    bar.close()
    shutil.rmtree(out / ".synthetic_tmp", ignore_errors=True)
    return len(tasks)


def generate_unlabelled(out: Path, n_speakers: int, seed: int = 0, jobs: int | None = None,
                        strength: float = 1.0, progress: bool = True) -> dict:
    """Generate (or complete) OUT/unlabelled: ``n_speakers`` speakers who are none of the
    corpus's labelled ones, each through its own session channels; returns its counts."""
    _check_tools()
    folder = Path(out) / "unlabelled"
    remove_stale_temporaries(folder)
    _check_config(folder / "synthetic_config.json",
                  {"speakers": n_speakers, "sizes": UNLABELLED_SIZES, "seed": seed,
                   "channel_strength": strength, "version": 1})
    speakers = make_unlabelled_plan(n_speakers, seed)
    done = synthesise(Path(out), speakers, seed, strength, jobs, progress)
    counts = {
        "unlabelled_speakers": n_speakers,
        "unlabelled_files": _files(speakers), "unlabelled_hours": _hours(speakers),
    }
    write_text(folder / "README.txt", NOTICE + "\n\nSpeech of speakers who are not in "
               "voxceleb1/ or voxceleb2/, without labels, for self-supervised pre-training.\n"
               + json.dumps(counts, indent=1) + "\n")
    return {**counts, "unlabelled_sessions_generated": done}


def sizes_from_args(args) -> dict:
    sizes = dict(PRESETS[args.preset])
    for key in ("speakers", "sessions", "utterances", "vox1_speakers"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    sizes["vox1_test"] = min(sizes["vox1_test"], sizes["vox1_speakers"])
    return sizes


def main(argv=None) -> None:
    presets = "\n".join(
        f"  {name:8s} {v['speakers']:5d} vox2 speakers (<= {v['sessions']} sessions, <= "
        f"{v['utterances']} files per session, >= {v['min_files']} files per speaker), "
        f"{v['vox1_speakers']} vox1 speakers ({v['vox1_test']} in the test set; files of "
        f"{v['vox1_seconds'][0]:g}-{v['vox1_seconds'][1]:g} s)"
        for name, v in PRESETS.items())
    parser = argparse.ArgumentParser(
        prog="python -m prepare.synthetic",
        description="Generate a SYNTHETIC VoxCeleb-shaped corpus (espeak-ng voices through "
        "simulated recording channels), laid out like the official archives.",
        epilog=f"presets:\n{presets}\nVoxCeleb2-style files are {SECONDS[0]:g}-{SECONDS[1]:g} s. "
        "--speakers/--sessions/--utterances/"
        "--vox1_speakers override the preset's values; a speaker with too few files gets "
        "extra files (still at most --utterances per session) or extra one-file sessions.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--preset", choices=list(PRESETS), default="default",
                        help="corpus size (default: default)")
    parser.add_argument("--speakers", type=int, help="number of VoxCeleb2 (training) speakers")
    parser.add_argument("--sessions", type=int,
                        help=f"most sessions per VoxCeleb2 speaker (>= {MIN_SESSIONS}; counts "
                        f"are uneven, between {MIN_SESSIONS} and this, skewed towards few)")
    parser.add_argument("--utterances", type=int,
                        help="most files per VoxCeleb2 session (>= 1; uneven, between 1 and "
                        "this, skewed towards few)")
    parser.add_argument("--vox1_speakers", type=int,
                        help="number of VoxCeleb1 (test) speakers")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(),
                        help="parallel workers; the output does not depend on it "
                        "(default: all cores)")
    parser.add_argument("--channel_strength", type=float, default=1.0,
                        help="scale of the session channel effects; 0 = almost clean "
                        "(default: 1.0, baseline EER ~30%%)")
    parser.add_argument("--augment_sets", action="store_true",
                        help="also write SYNTHETIC stand-ins for MUSAN (OUT/musan) and "
                        "RIRS_NOISES (OUT/RIRS_NOISES) in their real layouts, for training "
                        "with augmentation (python -m prepare.augment_sets prepares them); "
                        "the corpus is the same with or without it")
    parser.add_argument("--unlabelled_speakers", type=int, default=0,
                        help="also write OUT/unlabelled: speech of N more speakers, none of "
                        "the corpus's, without labels (~25 s each), for self-supervised "
                        "pre-training (recipes/VoxCeleb/pretrain.py); default 0")
    args = parser.parse_args(argv)
    sizes = sizes_from_args(args)
    if sizes["speakers"] < 2 or sizes["vox1_speakers"] < 2:
        parser.error("need at least 2 VoxCeleb2 and 2 VoxCeleb1 speakers")
    if args.unlabelled_speakers < 0:
        parser.error("--unlabelled_speakers must be >= 0")
    if sizes["sessions"] < MIN_SESSIONS or sizes["utterances"] < 1 or args.jobs < 1:
        parser.error(f"--sessions must be >= {MIN_SESSIONS}, --utterances and --jobs >= 1")
    print(f"NOTE: {NOTICE}", flush=True)
    start = time.time()
    counts = generate(args.out, sizes, args.seed, args.jobs, args.channel_strength)
    if args.augment_sets:
        counts.update(generate_augment_sets(args.out, args.seed))
    if args.unlabelled_speakers:
        counts.update(generate_unlabelled(args.out, args.unlabelled_speakers, args.seed,
                                          args.jobs, args.channel_strength))
    print(json.dumps({**counts, "seconds": round(time.time() - start, 1)}, indent=1))
    print(f"Synthetic corpus written to {args.out} (see {args.out / 'README.txt'}).")


if __name__ == "__main__":
    main()
