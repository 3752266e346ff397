"""The checks of train.py's hparams, all made before anything is built or trained.

A long run should never fail at its end for a value it could have refused at its start, so
every value train.py reads is checked here: the training's own, the run folder, the
evaluation's after training (lowres.scoring.evaluation.check_values), augmentation, shards
and the parent run of a fine-tuning stage.
"""

from __future__ import annotations

import importlib.util

from lowres.data import augment, shards
from lowres.data.loading import INPUT_NORMALISATIONS, VAL_SCHEDULES
from lowres.io.hparams import invalid_hparam
from lowres.io.outputs import check_output_folder
from lowres.scoring.eval_settings import check_values
from lowres.training.parent_run import parent_checkpoint
from lowres.training.runs import COMPILE_MODES, PRECISIONS, VALID_PRECISIONS
from lowres.training.schedules import SCHEDULES
from lowres.training.tracking import WANDB_MODES


def check_hparams(values: dict, world_size: int) -> None:
    """Raise HparamsError naming the key and value of the first invalid setting (an
    OutputPathError for an output_folder that cannot be written)."""

    def positive_number(key, integer=False):
        v = values.get(key)
        kinds = (int,) if integer else (int, float)
        if isinstance(v, bool) or not isinstance(v, kinds) or not v > 0:
            raise invalid_hparam(key, v, f"must be a positive {'integer' if integer else 'number'}")

    def one_of(key, choices, default=None):
        if values.get(key, default) not in choices:
            raise invalid_hparam(key, values.get(key), f"must be one of {', '.join(choices)}")

    def flag(key):
        if not isinstance(values.get(key, False), bool):
            raise invalid_hparam(key, values[key], "must be true or false")

    def needs_package(key):
        if values.get(key) and importlib.util.find_spec(key) is None:
            raise invalid_hparam(key, values[key], f"needs the {key} package (requirements.txt)")

    check_output_folder(values["output_folder"], "output_folder")
    positive_number("lr")
    positive_number("max_steps", integer=True)
    positive_number("batch_size", integer=True)
    positive_number("crop_seconds")
    positive_number("log_interval", integer=True)
    positive_number("rank_wait_hours")
    one_of("lr_schedule", SCHEDULES)
    if "regularisation" in values:
        from lowres.models.wav2vec2 import REGULARISATION_PRESETS

        one_of("regularisation", REGULARISATION_PRESETS)
    if "ssl_pooling" in values:
        from lowres.models.wav2vec2 import MHFA_SIZES, POOLINGS, SSL_MODEL_CLASSES, check_mhfa

        one_of("ssl_pooling", POOLINGS)
        # ssl_backend is among the plain values only when null (a factory is an object)
        check_mhfa(values["ssl_pooling"], values.get("ssl_backend", "object") is not None,
                   {key: values.get(key) for key in MHFA_SIZES})
        if values.get("ssl_model_type") not in ("auto", *SSL_MODEL_CLASSES):
            raise invalid_hparam("ssl_model_type", values.get("ssl_model_type"),
                                 f"must be auto or one of {', '.join(SSL_MODEL_CLASSES)}")
    if "ssl_adaptation" in values:  # the target modules are checked with the backbone
        from lowres.models.ssl_adaptation import check_adaptation

        check_adaptation(values["ssl_adaptation"], values["lora_rank"], values["lora_alpha"],
                         values["lora_dropout"], values["lora_target_modules"],
                         values["adapter_bottleneck"])
        if values.get("ssl_adaptation_lr") is not None:
            positive_number("ssl_adaptation_lr")
            if values["ssl_adaptation"] == "frozen":
                raise invalid_hparam("ssl_adaptation_lr", values["ssl_adaptation_lr"],
                                     "ssl_adaptation frozen trains no backbone weight: "
                                     "leave it null")
    one_of("precision", PRECISIONS)
    one_of("valid_precision", VALID_PRECISIONS)
    for key in ("compile_embedder", "fused_optimizer", "evaluate_last"):
        flag(key)
    one_of("compile_mode", COMPILE_MODES, default="default")
    v = values.get("val_interval")
    if v != "epoch" and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
        raise invalid_hparam("val_interval", v, "must be a positive number of steps or 'epoch'")
    one_of("val_schedule", VAL_SCHEDULES)
    if "input_normalisation" in values:
        one_of("input_normalisation", INPUT_NORMALISATIONS)
    check_values(values)  # what the evaluation after training reads: test_sets, AS-norm ...
    flag("tensorboard")
    needs_package("tensorboard")
    flag("wandb")
    if values.get("wandb"):
        needs_package("wandb")
        one_of("wandb_mode", WANDB_MODES)
        if not isinstance(values.get("wandb_project"), str) or not values["wandb_project"]:
            raise invalid_hparam("wandb_project", values.get("wandb_project"),
                                 "must be a W&B project name")
        timeout = values.get("wandb_init_timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise invalid_hparam("wandb_init_timeout", timeout,
                                 "must be a positive number of seconds")
    from prepare.voxceleb import DEFAULTS

    unknown = sorted(set(dict(values.get("prepare_options") or {})) - set(DEFAULTS))
    if unknown:
        raise invalid_hparam("prepare_options", values.get("prepare_options"),
                             f"unknown prepare.voxceleb option(s) {', '.join(unknown)}")
    if values.get("init_from_run"):
        parent_checkpoint(values["init_from_run"], values["output_folder"])
    augment.augment_config(values)  # augmentation keys and their prepared CSVs
    shards.check_hparams(values)  # data_format, shard_folder
    if values["batch_size"] % world_size:
        raise invalid_hparam("batch_size", values["batch_size"],
                             f"the global batch must divide over the {world_size} DDP processes")
    if values.get("wav2vec_initially_frozen"):  # the SSL families (wav2vec2, ssl_ecapa)
        n = values.get("num_frozen_steps")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise invalid_hparam("num_frozen_steps", n,
                                 "must be a non-negative integer (or null: never unfreeze)")
