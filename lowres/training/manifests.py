"""The manifests a speaker-recognition run reads, made or checked before it starts.

Missing manifests are made by prepare.voxceleb (main process); existing ones must have been
made with the yaml's ``prepare_options``, which act only when manifests are made. The test
lists of the evaluation after training must exist at the start (not at the end of a long
run), and utterance normalisation adds each file's statistics to the manifests once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lowres.io.hparams import HparamsError, invalid_hparam
from lowres.io.lists import test_set_files, test_set_names
from lowres.training.ranks import run_on_main_waiting

logger = logging.getLogger(__name__)


def manifests_ready(values: dict) -> bool:
    """The subset's training and validation manifests and validation trials all exist."""
    return all(Path(values[k]).is_file() for k in ("train_csv", "valid_csv", "val_trials"))


def check_prepare_options(values: dict) -> None:
    """HparamsError when ``prepare_options`` asks for manifests other than the existing
    ones were made with: those options act only when manifests are made, so a changed
    value would otherwise do nothing, silently. Unset options are not compared."""
    from prepare.voxceleb import content_options, recorded_options

    options = dict(values.get("prepare_options") or {})
    given, folder = content_options(options), Path(values["manifest_folder"]) / values["subset"]
    recorded = recorded_options(values["manifest_folder"], values["subset"])
    if recorded is None:
        logger.log(logging.WARNING if given else logging.INFO, "the prepare_options of %s "
                   "cannot be checked: it was prepared before lowres recorded them", folder)
        return
    for key, value in given.items():
        if key in recorded and value != recorded[key]:
            raise invalid_hparam(
                "prepare_options", options, f"{key}={value!r}, but the manifests in {folder} "
                f"were made with {key}={recorded[key]!r} (prepare_options act only when "
                "manifests are made: use another manifest_folder, or delete that folder to "
                "remake it)")


def prepare_manifests(values: dict) -> None:
    """Make the manifests with prepare.voxceleb (main process only) if they are missing;
    existing ones must have been made with the yaml's ``prepare_options``. Missing
    manifests without data_folder or manifest_folder (whose default,
    ``<data_folder>/manifests``, is then ``None/manifests``): one of them is required."""
    if manifests_ready(values):
        check_prepare_options(values)
        return
    data_folder = values.get("data_folder")
    if data_folder is None and Path(values["manifest_folder"]).parts[0] == "None":
        raise invalid_hparam("data_folder", None, "data_folder or manifest_folder is required: "
                             "give --data_folder DIR (the VoxCeleb folder, to prepare the "
                             "manifests) or --manifest_folder DIR (manifests prepared before)")
    if not data_folder or not Path(data_folder).is_dir():
        raise invalid_hparam(
            "data_folder", data_folder, "the manifests are missing (manifest_folder="
            f"{values['manifest_folder']!r}, no {values['train_csv']}) and data_folder must be "
            "an existing VoxCeleb folder to prepare them")
    from prepare.voxceleb import prepare_voxceleb

    def prepare():
        try:
            prepare_voxceleb(data_folder, values["manifest_folder"],
                             **dict(values.get("prepare_options") or {}))
        except TypeError as err:
            raise invalid_hparam("prepare_options", values.get("prepare_options"),
                                 str(err)) from err

    run_on_main_waiting(prepare, wait_hours=values["rank_wait_hours"])
    if not manifests_ready(values):
        raise HparamsError(f"prepare.voxceleb ran but subset {values['subset']!r} has no "
                           f"manifests in manifest_folder={values['manifest_folder']!r}")


def check_test_sets(values: dict) -> None:
    """The test manifests the evaluation after training will read exist (checked now, not
    at the end of a long run)."""
    if not values.get("evaluate_after_training"):
        return
    for name in test_set_names(values["test_sets"]):
        for path in test_set_files(values["manifest_folder"], name):
            if not path.is_file():
                raise invalid_hparam(
                    "test_sets", values["test_sets"], f"{path} is missing (prepare it: python "
                    f"-m prepare.voxceleb --data_folder DIR --save_folder "
                    f"{values['manifest_folder']} --test_sets {name}, or leave {name} out)")


def prepare_wav_stats(values: dict) -> None:
    """Utterance normalisation: add the per-file statistics to the train and validation
    manifests when they lack them (once, main process; prepare.wav_stats)."""
    if values.get("input_normalisation") != "utterance":
        return
    from prepare.wav_stats import add_wav_stats

    jobs = dict(values.get("prepare_options") or {}).get("jobs") or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())

    def add():
        for key in ("train_csv", "valid_csv"):
            if add_wav_stats(values[key], jobs):
                logger.info("input_normalisation utterance: added wav_mean / wav_std to %s",
                            values[key])

    run_on_main_waiting(add, wait_hours=values["rank_wait_hours"])
