"""VoxCeleb preparation: ``python -m prepare.voxceleb --data_folder DIR --save_folder M``.

Stages (each resumable; a rerun skips what is done and redoes what changed):

1. convert   VoxCeleb2 dev m4a -> 16 kHz mono wav (prepare.convert)
2. listing   every utterance with duration and gender, cached as M/listing.csv (prepare.listing)
3. split     session-disjoint validation split (prepare.split), then the subsets (prepare.subsets)
4. trials    validation trials per subset (prepare.trials); by default, as in the study's
             runs, tiny_many_low validates on full's trials and tiny_many_high on
             tiny_few's (remade from the validation split when that subset is not
             built); ``--no-val_trials_as_published``: each subset its own trials over
             its validation files, as a --custom_subset always has
5. manifests M/<subset>/{train.csv,val.csv,val_trials.txt,stats.json}, M/test/* (prepare.manifests);
             M/prepare_options.json: the options each subset was made with (train.py
             refuses ``prepare_options`` that differ, as they act only on new manifests)
6. wav_stats (``--wav_stats``) per-file wav_mean / wav_std in each subset's train.csv and
   val.csv, for wav2vec2's utterance normalisation (prepare.wav_stats; train.py adds them
   when they are missing)

``--study_lists DIR`` (the study's five published files, ``python -m prepare.study_lists``)
reproduces the study exactly: full (validation = the validation keys of its tiny_many
lists, train = every other file), tiny_few, tiny_many_low and tiny_many_high, each with
the validation trials the study used for it (prepare.study_lists.TRIALS).  Each
subset's ``stats.json`` says where it came from: ``rule`` (how it was made; a
published list with its path and sha256) and ``val_trials.source`` (``published``:
file and sha256; ``generated``: generator, seed, n_trials and, for trials taken from
another subset, ``shared_from``: its name).

Expected input (the official archives, extracted):
``DIR/voxceleb2/dev/aac/<spk>/<session>/<utt>.m4a``, ``DIR/voxceleb1/wav/...wav``,
``DIR/meta/{vox1_meta.csv,vox2_meta.csv,veri_test2.txt,list_test_all2.txt,list_test_hard2.txt}``.
Bad input raises :class:`prepare.errors.PrepareError`; the CLI prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lowres.io import lists
from lowres.io.atomic import (
    atomic_folder,
    folder_lock,
    mark_done,
    read_json,
    remove_stale_temporaries,
    stage_done,
    write_json,
)
from prepare import manifests, study_lists
from prepare.convert import convert_voxceleb2
from prepare.errors import USER_ERRORS, PrepareError, PrepareWarning
from prepare.listing import load_or_build_listing
from prepare.meta import gender_map
from prepare.split import split_validation
from prepare.subsets import (
    SUBSETS,
    check_not_empty,
    list_name,
    parse_budget,
    select_budget,
    select_from_list,
    select_full,
    select_full_from_lists,
    select_tiny_few,
    select_tiny_many,
    subset_val,
    write_subset_list,
)
from prepare.trials import GENERATOR, make_val_trials
from prepare.wav_stats import add_wav_stats_all

log = logging.getLogger("prepare.voxceleb")

DEFAULTS = dict(
    wav_folder=None, meta_folder=None, vox1_folder=None,
    subsets=None, subset_lists=(), custom_subsets=(), study_lists=None,
    test_sets=tuple(manifests.TEST_LISTS),
    seed=1337, jobs=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
    else os.cpu_count() or 1,  # the CPUs this job may use (SLURM), not the node's
    convert_batch=32, val_fraction=0.01,
    few_speakers_per_gender=50, many_files_per_speaker=8,
    low_max_files_per_session=8, high_max_files_per_session=1,
    val_trials_full=30000, val_trials_tiny=2000, val_trials_as_published=True,
    wav_stats=False,
)
PARAMS_FILE = "prepare_params.json"
# M/prepare_options.json: subset -> the content options (content_options) it was last
# prepared with, so that train.py can refuse prepare_options its manifests do not follow
OPTIONS_FILE = "prepare_options.json"
# Options that change how the work is done or which folders are made, not what a subset's
# manifests hold (wav_stats: columns that train.py adds itself when a run needs them).
NOT_CONTENT = ("jobs", "convert_batch", "subsets", "test_sets", "wav_stats")
PATH_OPTIONS = ("wav_folder", "meta_folder", "vox1_folder", "study_lists")
# Rule-made subset -> the subset whose validation trials it takes with
# val_trials_as_published, as the study's configs did (study_lists.TRIALS; docs/study.md,
# 'Data in the published runs').
TRIALS_FROM = {"tiny_many_low": "full", "tiny_many_high": "tiny_few"}


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _fingerprint(df: pd.DataFrame) -> str:
    """A cheap content hash of a listing (IDs and durations)."""
    h = pd.util.hash_pandas_object(df[["ID", "duration"]], index=False).to_numpy()
    return f"{len(df)}:{int(h.sum(dtype='uint64'))}"


def list_rule(path: Path, n_trials: int) -> dict:
    """The rule of a published list; its validation trials beside it when there.

    The trials a list takes: for the study's subset names the file the study used
    (study_lists.TRIALS: tiny_many_high validated on val_trials_tiny_few.txt), for
    another name N ``val_trials_N.txt``; when absent, trials are generated.
    """
    if not path.is_file():
        raise PrepareError(f"subset list not found: {path}")
    name = list_name(path)
    rule = {"rule": "list", "list": str(path.resolve()),
            "list_sha256": study_lists.sha256_file(path)}
    published = path.with_name(study_lists.TRIALS.get(name, f"val_trials_{name}.txt"))
    if published.is_file():
        rule.update(trials=str(published.resolve()),
                    trials_sha256=study_lists.sha256_file(published))
    else:
        rule["n_trials"] = n_trials
    return rule


def study_rules(folder: Path) -> dict[str, dict]:
    """The study's four subsets from its five published files in ``folder`` (checked)."""
    study_lists.check_folder(folder)
    rules = {name: list_rule(folder / f, 0) for name, f in study_lists.LISTS.items()}
    val_lists = [folder / study_lists.LISTS[n] for n in study_lists.FULL_VAL_FROM]
    trials = folder / study_lists.TRIALS["full"]
    full = {"rule": "study_full", "val_lists": [str(p.resolve()) for p in val_lists],
            "val_lists_sha256": [study_lists.sha256_file(p) for p in val_lists],
            "trials": str(trials.resolve()), "trials_sha256": study_lists.sha256_file(trials)}
    return {"full": full, **rules}


def standard_rule(name: str, o: dict) -> dict:
    """The rule of a rule-made subset (SUBSETS) from the options, with its trials.

    With ``val_trials_as_published`` (default) tiny_many_low and tiny_many_high take the
    trials the rule-made full and tiny_few get (``trials_from``: that subset's rule), as
    the study's configs did; otherwise each generates ``n_trials`` over its own files.
    """
    rule: dict = {"rule": name}
    owner = TRIALS_FROM.get(name) if o["val_trials_as_published"] else None
    if owner is None:
        rule["n_trials"] = o["val_trials_full" if name == "full" else "val_trials_tiny"]
    if name == "tiny_few":
        rule["speakers_per_gender"] = o["few_speakers_per_gender"]
    elif name.startswith("tiny_many"):
        rule["files_per_speaker"] = o["many_files_per_speaker"]
        rule["max_files_per_session"] = o[f"{name[10:]}_max_files_per_session"]
    if owner is not None:
        rule["trials_from"] = standard_rule(owner, o)
    return rule


def subset_rules(o: dict) -> dict[str, dict]:
    """Subset name -> how to build it (rule and budget), from the options."""
    rules: dict[str, dict] = {}
    names = o["subsets"]
    if names is None:
        names = () if (o["subset_lists"] or o["custom_subsets"] or o["study_lists"]) \
            else SUBSETS
    for name in names:
        if name not in SUBSETS:
            raise PrepareError(f"unknown subset {name!r} (choose from {', '.join(SUBSETS)})")
        rules[name] = standard_rule(name, o)
    for spec in o["custom_subsets"]:
        name, budget = parse_budget(spec)
        rules[name] = {"rule": "budget", "n_trials": o["val_trials_tiny"], **budget}
    given = []
    for path in o["subset_lists"]:
        name = list_name(path)
        n_trials = o["val_trials_full" if name == "full" else "val_trials_tiny"]
        given.append((name, list_rule(Path(path), n_trials)))
    if o["study_lists"]:
        given += study_rules(Path(o["study_lists"])).items()
    for name, rule in given:
        if name in rules:
            raise PrepareError(f"subset {name!r} is asked for twice (by --subsets, "
                               "--custom_subset, --subset_list or --study_lists)")
        rules[name] = rule
    return rules


def build_subset(rule: dict, listing: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) rows of one subset."""
    kind = rule["rule"]
    if kind == "list":
        return select_from_list(listing, rule["list"])
    if kind == "study_full":
        sub, sub_val = select_full_from_lists(listing, rule["val_lists"])
        if len(sub) != study_lists.STUDY_FULL_TRAIN_FILES:
            diff = len(sub) - study_lists.STUDY_FULL_TRAIN_FILES
            warnings.warn(
                f"full: {len(sub):,} train files, {abs(diff):,} {'more' if diff > 0 else 'fewer'}"
                f" than the study's {study_lists.STUDY_FULL_TRAIN_FILES:,} (the authors' copy "
                f"of VoxCeleb2 dev had {study_lists.STUDY_DEV_FILES:,} files, the official "
                f"release has {study_lists.OFFICIAL_DEV_FILES:,}; which ones they lacked was "
                "not published)", PrepareWarning, stacklevel=2)
        return sub, sub_val
    if kind == "full":
        sub = select_full(train)
    elif kind == "tiny_few":
        sub = select_tiny_few(train, rule["speakers_per_gender"])
    elif kind in ("tiny_many_low", "tiny_many_high"):
        sub = select_tiny_many(train, rule["files_per_speaker"], rule["max_files_per_session"],
                               seed)
    else:
        budget = {k: v for k, v in rule.items() if k not in ("rule", "n_trials")}
        sub = select_budget(train, seed=seed, **budget)
    return sub, subset_val(val, sub)


def write_subset(folder: Path, name: str, rule: dict, listing: pd.DataFrame,
                 train: pd.DataFrame, val: pd.DataFrame, params: dict, seed: int) -> None:
    """Build one subset and write its folder atomically."""
    sub_train, sub_val = build_subset(rule, listing, train, val, seed)
    check_not_empty(name, sub_train, sub_val)
    if "trials" in rule:
        trials = lists.read_trials(rule["trials"])
        manifests.check_trials_in(trials, sub_val, rule["trials"], name)
        source = {"kind": "published", "file": rule["trials"], "sha256": rule["trials_sha256"]}
    elif "trials_from" in rule:  # the owner's trials, remade (seeded) without its folder
        owner = rule["trials_from"]
        owner_train, owner_val = build_subset(owner, listing, train, val, seed)
        check_not_empty(f"{owner['rule']}, whose trials {name} validates on", owner_train,
                        owner_val)
        trials = make_val_trials(owner_val, owner["n_trials"], seed,
                                 name=f"{name} (on {owner['rule']}'s trials)")
        manifests.check_trials_in(trials, sub_val, f"the trials of {owner['rule']}", name)
        source = {"kind": "generated", "generator": GENERATOR, "seed": seed,
                  "n_trials": owner["n_trials"], "shared_from": owner["rule"]}
    else:
        trials = make_val_trials(sub_val, rule["n_trials"], seed, name=name)
        source = {"kind": "generated", "generator": GENERATOR, "seed": seed,
                  "n_trials": rule["n_trials"]}
    with atomic_folder(folder) as tmp:
        lists.write_manifest(tmp / "train.csv", sub_train)
        lists.write_manifest(tmp / "val.csv", sub_val)
        lists.write_trials(tmp / "val_trials.txt", trials)
        stats = manifests.subset_stats(sub_train, sub_val, trials)
        stats["subset"], stats["rule"] = name, rule
        stats["val_trials"]["source"] = source
        manifests.write_json_stats(tmp / "stats.json", stats)
        write_subset_list(tmp / f"{name}_utterance_list.csv",
                          sub_train.sort_values("ID"), sub_val.sort_values("ID"))
        mark_done(tmp / PARAMS_FILE, params)
    s = stats["train"]
    log.info("%s: %d train files, %d speakers, %d sessions, %.1f h; %d val files; %d trials",
             name, s["files"], s["speakers"], s["sessions"], s["hours"],
             stats["val"]["files"], stats["val_trials"]["trials"])


def test_list_files(meta: Path, test_sets) -> dict[str, Path]:
    """Test set name -> its official trial list; checked before any long work."""
    unknown = [t for t in test_sets if t not in manifests.TEST_LISTS]
    if unknown:
        raise PrepareError(f"unknown test set {unknown[0]!r} "
                           f"(choose from {', '.join(manifests.TEST_LISTS)})")
    files = {t: meta / manifests.TEST_LISTS[t] for t in test_sets}
    for f in files.values():
        if not f.is_file():
            raise PrepareError(f"trial list not found: {f}")
    return files


def prepare_test_sets(save: Path, files: dict[str, Path], vox1_wav: Path, meta: Path,
                      jobs: int) -> None:
    """M/test/<name>.csv + <name>_trials.txt for each requested VoxCeleb1 test set.

    Each set has its own done-marker (M/test/.<name>.json), so preparing one set
    never touches the others.
    """
    if not files:
        return
    out = save / "test"
    vox1_meta = meta / "vox1_meta.csv"
    base = {"vox1_wav": str(vox1_wav.resolve()),
            "vox1_meta": _sha1(vox1_meta) if vox1_meta.is_file() else None}
    genders, known = None, {}
    for t, f in files.items():
        params = {**base, "list": str(f.resolve()), "list_sha1": _sha1(f)}
        marker = out / f".{t}.json"
        if stage_done(marker, params):
            log.info("test %s: done already", t)
            continue
        if genders is None:
            genders = gender_map(vox1_meta)
        marker.unlink(missing_ok=True)
        manifests.write_test_set(save, t, f, vox1_wav, genders, jobs, known)
        mark_done(marker, params)
        log.info("test %s: %s", t, f.name)


def _names(value):
    """None, 'a,b', 'a b' or a sequence of names -> tuple of names (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    return tuple(v for item in value for v in str(item).replace(",", " ").split())


def prepare_voxceleb(data_folder, save_folder, **options) -> None:
    """Run every stage (see module doc); options as the CLI's (see DEFAULTS).

    ``subsets`` and ``test_sets`` take a list of names or a comma-separated string;
    ``subset_lists`` and ``custom_subsets`` a list (a single string is one item).
    """
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    with folder_lock(save_folder):
        _prepare(Path(data_folder), Path(save_folder), {**DEFAULTS, **options})


def content_options(options: dict) -> dict:
    """The options among ``options`` that change a subset's manifests, in the form
    OPTIONS_FILE records them (paths resolved, lists as lists), so two are comparable."""
    def plain(key, value):
        if key in PATH_OPTIONS:
            return None if value is None else str(Path(value).resolve())
        if key in ("subset_lists", "custom_subsets"):
            items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
            return [str(Path(v).resolve()) if key == "subset_lists" else v for v in items]
        return value

    return {k: plain(k, v) for k, v in options.items() if k not in NOT_CONTENT}


def recorded_options(save_folder: str | os.PathLike, subset: str) -> dict | None:
    """The content options ``subset`` of ``save_folder`` was prepared with; None for a
    folder prepared before they were recorded."""
    return (read_json(Path(save_folder) / OPTIONS_FILE) or {}).get(subset)


def record_options(save: Path, subsets: Iterable[str], o: dict) -> None:
    """Record (atomically; only when it changes) that ``subsets`` are prepared with ``o``."""
    old = read_json(save / OPTIONS_FILE) or {}
    new = {**old, **{name: content_options(o) for name in subsets}}
    if new != old:
        write_json(save / OPTIONS_FILE, new)


def _prepare(data: Path, save: Path, o: dict) -> None:
    o["subsets"], o["test_sets"] = _names(o["subsets"]), _names(o["test_sets"]) or ()
    for key in ("subset_lists", "custom_subsets"):
        if isinstance(o[key], (str, os.PathLike)):
            o[key] = (o[key],)
    meta = Path(o["meta_folder"] or data / "meta")
    wav_root = Path(o["wav_folder"] or data / "voxceleb2" / "dev" / "wav")
    aac_root = data / "voxceleb2" / "dev" / "aac"
    vox1_wav = Path(o["vox1_folder"] or data / "voxceleb1" / "wav")
    remove_stale_temporaries(save)
    remove_stale_temporaries(save / ".stages")
    remove_stale_temporaries(save / "test")

    rules = subset_rules(o)  # option and input errors before any long work
    genders = gender_map(meta / "vox2_meta.csv")
    test_lists = test_list_files(meta, o["test_sets"])

    # 1. convert
    marker = save / ".stages" / "convert.json"
    key = {"aac": str(aac_root.resolve()), "wav": str(wav_root.resolve())}
    if stage_done(marker, key):
        log.info("convert: done already")
    elif aac_root.is_dir():
        n = convert_voxceleb2(aac_root, wav_root, o["jobs"], o["convert_batch"])
        mark_done(marker, key)
        log.info("convert: %d files in %s", n, wav_root)
    elif not wav_root.is_dir():
        raise PrepareError(f"no VoxCeleb2 dev audio: neither {aac_root} (m4a) nor "
                           f"{wav_root} (wav) exists")

    # 2. listing
    cached = (save / "listing.csv").exists()
    listing = load_or_build_listing(save / "listing.csv", wav_root, genders, o["jobs"])
    log.info("listing: %d files, %d speakers%s", len(listing), listing.spk_id.nunique(),
             " (cached)" if cached else "")

    # 3-5. split, subsets, trials, manifests
    base = {"listing": _fingerprint(listing), "seed": o["seed"],
            "val_fraction": o["val_fraction"]}
    split = None
    for name, rule in rules.items():
        params = {**base, **rule}
        if "trials" not in rule:  # a new generator version remakes generated trials
            params["trials_generator"] = GENERATOR
        folder = save / name
        if stage_done(folder / PARAMS_FILE, params):
            log.info("%s: done already", name)
            continue
        if split is None:
            is_val = split_validation(listing, o["val_fraction"], o["seed"])
            split = (listing[~is_val], listing[is_val])
        write_subset(folder, name, rule, listing, *split, params, o["seed"])
    record_options(save, rules, o)

    prepare_test_sets(save, test_lists, vox1_wav, meta, o["jobs"])
    if o["wav_stats"]:  # 6. wav_stats
        for name in rules:
            add_wav_stats_all([save / name / "train.csv", save / name / "val.csv"], o["jobs"])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m prepare.voxceleb",
        description="Prepare VoxCeleb (or the synthetic corpus) for the lowres recipes: "
                    "convert, list, split, subsets, validation trials, test manifests.",
    )
    d = DEFAULTS
    p.add_argument("--data_folder", required=True,
                   help="root with voxceleb2/dev/aac, voxceleb1/wav and meta/")
    p.add_argument("--save_folder", required=True, help="where manifests are written")
    p.add_argument("--wav_folder", help="converted VoxCeleb2 wavs (default DATA/voxceleb2/dev/wav)")
    p.add_argument("--meta_folder", help="meta files and trial lists (default DATA/meta)")
    p.add_argument("--vox1_folder", help="VoxCeleb1 wav root (default DATA/voxceleb1/wav)")
    p.add_argument("--subsets", nargs="+", default=None,
                   help=f"rule-made subsets among {' '.join(SUBSETS)} (default: all, or none "
                        "when --subset_list/--custom_subset/--study_lists is given)")
    p.add_argument("--study_lists", metavar="DIR",
                   help="reproduce the study's split and subsets exactly from its five "
                   "published files in DIR (get them with python -m prepare.study_lists "
                   "--out DIR): full, tiny_few, tiny_many_low, tiny_many_high with the "
                   "study's validation trials")
    p.add_argument("--subset_list", action="append", default=[], dest="subset_lists",
                   metavar="FILE", help="reproduce the subset of a published list "
                   "(utterance_key;shard_dix;set_name; name from the file: "
                   "tiny_few_utterance_list.csv -> tiny_few); its validation trials are "
                   "taken from beside it when there: the study's file for the study's "
                   "names (val_trials.txt for full and tiny_many_low, "
                   "val_trials_tiny_few.txt for tiny_few and tiny_many_high), else "
                   "val_trials_<name>.txt; repeatable")
    p.add_argument("--custom_subset", action="append", default=[], dest="custom_subsets",
                   metavar="NAME:key=v,...", help="a subset with its own budget; keys "
                   "speakers_per_gender, max_sessions_per_speaker, max_files_per_session, "
                   "files_per_speaker; repeatable")
    p.add_argument("--test_sets", nargs="*", default=list(d["test_sets"]),
                   help="VoxCeleb1 test sets to write (default: %(default)s; the option "
                        "without values writes none)")
    p.add_argument("--seed", type=int, default=d["seed"], help="default %(default)s")
    p.add_argument("--wav_stats", action="store_true",
                   help="also add each file's wav_mean / wav_std to the subsets' manifests "
                        "(wav2vec2's utterance normalisation; train.py adds them otherwise)")
    p.add_argument("--jobs", type=int, default=d["jobs"],
                   help="parallel ffmpeg processes / header readers (default %(default)s)")
    p.add_argument("--convert_batch", type=int, default=d["convert_batch"],
                   help="m4a files decoded per ffmpeg process (default %(default)s)")
    p.add_argument("--val_fraction", type=float, default=d["val_fraction"],
                   help="per speaker, move sessions to validation until more than this "
                        "fraction of files is there (default %(default)s)")
    p.add_argument("--few_speakers_per_gender", type=int, default=d["few_speakers_per_gender"],
                   help="tiny_few: speakers per gender (default %(default)s)")
    p.add_argument("--many_files_per_speaker", type=int, default=d["many_files_per_speaker"],
                   help="tiny_many_*: files per speaker (default %(default)s)")
    p.add_argument("--low_max_files_per_session", type=int,
                   default=d["low_max_files_per_session"],
                   help="tiny_many_low: files per session visit (default %(default)s)")
    p.add_argument("--high_max_files_per_session", type=int,
                   default=d["high_max_files_per_session"],
                   help="tiny_many_high: files per session visit (default %(default)s)")
    p.add_argument("--val_trials_full", type=int, default=d["val_trials_full"],
                   help="validation trials of full, also tiny_many_low's with "
                        "--val_trials_as_published (default %(default)s)")
    p.add_argument("--val_trials_tiny", type=int, default=d["val_trials_tiny"],
                   help="validation trials of the other subsets; with "
                        "--val_trials_as_published tiny_many_high takes tiny_few's and "
                        "tiny_many_low full's (default %(default)s)")
    p.add_argument("--val_trials_as_published", action=argparse.BooleanOptionalAction,
                   default=d["val_trials_as_published"],
                   help="tiny_many_low validates on full's trials and tiny_many_high on "
                        "tiny_few's, as the study's runs did (default); --no-... gives "
                        "each subset its own trials over its validation files")
    return p.parse_args(argv)


def _warn(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = vars(parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    warnings.showwarning = _warn
    warnings.simplefilter("always", PrepareWarning)
    data, save = args.pop("data_folder"), args.pop("save_folder")
    try:
        prepare_voxceleb(data, save, **args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
