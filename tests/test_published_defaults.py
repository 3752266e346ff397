"""The defaults of the reproduction-switch table (recipes/VoxCeleb/README.md): a run built
from the shipped yaml does what the published runs did, each pinned by what the run does,
not only by the value the yaml holds."""

import itertools

import pytest
import speechbrain as sb
import torch
from conftest import ROOT, load_script
from test_train_hparams import HPARAMS, TRAIN

from lowres.io.hparams import plain_values
from lowres.study.grids import expand

CELL = HPARAMS / "xvector_tiny_few.yaml"
README = ROOT / "recipes" / "VoxCeleb" / "README.md"
COLUMNS = ("behaviour", "published", "key", "default", "alternative", "bug")


def switch_table() -> dict[str, dict[str, str]]:
    """The reproduction-switch table of the recipe's README: behaviour -> its cells."""
    lines = README.read_text().split("the reproduction switches", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:])
    cells = [dict(zip(COLUMNS, (c.strip() for c in row.strip(" |").split(" | ")), strict=True))
             for row in rows]
    return {row["behaviour"]: row for row in cells}


@pytest.fixture(scope="module")
def train():
    return load_script(TRAIN, "lowres_train")


def validation_dtype(train, argv: list[str]) -> torch.dtype:
    """The dtype a linear layer computes in during a validation of a Brain given the run
    options train.py builds from the shipped yaml and ``argv``."""
    _, run_opts, overrides = sb.parse_arguments([str(CELL), "--data_folder=/x",
                                                 "--device=cpu", *argv])
    values = plain_values(CELL, overrides)
    train.check_hparams(values, world_size=1)
    run_opts, _, _ = train.precision_run_opts(values, run_opts)
    brain = sb.core.Brain(modules={"linear": torch.nn.Linear(4, 4)}, run_opts=run_opts)
    with brain.evaluation_ctx:
        return brain.modules.linear(torch.randn(2, 4)).dtype


@pytest.mark.parametrize("argv, dtype", [
    ([], torch.bfloat16),  # as published: under the training precision's autocast
    (["--valid_precision=fp32"], torch.float32),  # SpeechBrain's default
    (["--valid_precision=fp32", "--eval_precision=bf16"], torch.bfloat16),  # command line wins
])
def test_validation_precision(train, argv, dtype):
    # CPU bf16 autocast stands in for a GPU's fp16 (which falls back to fp32 on CPU)
    assert validation_dtype(train, ["--precision=bf16", *argv]) == dtype


def test_validation_precision_on_cpu_follows_the_fp16_fallback(train):
    assert validation_dtype(train, []) == torch.float32  # the yaml's fp16 is fp32 on CPU


def test_as_norm_in_the_steps_grid_as_the_table_says():
    """On (with the original's one-sided AS-norm) for the steps runs of ECAPA and wav2vec2,
    as the study's commands; off in the LR grids and for x-vector."""
    row = switch_table()["AS-norm"]
    assert "`as_norm_variant`" in row["key"] and "`post_process_scores`" in row["key"]
    assert "steps grid's ECAPA and wav2vec2 runs" in row["default"]
    assert "`one_sided_whole_cohort`" in row["default"]
    assert "`two_sided_top_k`" in row["alternative"]
    for grid in ("naive_lr", "detailed_lr", "steps"):
        for run in expand(grid, subsets=["tiny_few"]):
            values = plain_values(ROOT / run.hparams_file,
                                  {"data_folder": "/x", **run.overrides})
            on = grid == "steps" and run.model in ("ecapa", "wav2vec2")
            assert values["post_process_scores"] is values["enroll_training_data"] is on
            assert values["as_norm_variant"] == "one_sided_whole_cohort"
