"""The defaults of the reproduction-switch table (recipes/VoxCeleb/README.md): a run built
from the shipped yaml does what the published runs did, each pinned by what the run does,
not only by the value the yaml holds."""

import pytest
import speechbrain as sb
import torch
from conftest import load_script
from test_train_hparams import HPARAMS, TRAIN

from lowres.io.hparams import plain_values

CELL = HPARAMS / "xvector_tiny_few.yaml"


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
