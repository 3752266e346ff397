"""Ordinary mistakes get one line, ``error: ...`` naming the value, and exit status 2 (130
for Ctrl-C), never a traceback.

The recipes turn these errors into that line in their ``__main__``, so they run as
subprocesses; they fail before any training, in seconds. lowres's commands return their
exit status from ``main``, so they run in process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lowres.io.hparams import HparamsError, check_keys, load_hparams
from lowres.study.grids.runner import main as grid_main
from lowres.study.grids.runs import expand, expand_experiments

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "VoxCeleb"
HPARAMS = ROOT / "hparams"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def recipe(script: str, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPES / script), *map(str, args)],
                          capture_output=True, text=True, env={**ENV, **(env or {})},
                          timeout=timeout)


def error_line(stderr: str) -> str:
    """The last line of stderr, which must be the whole error: no traceback before it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    line = stderr.rstrip().splitlines()[-1]
    assert line.startswith("error: "), stderr[-3000:]
    return line


def assert_recipe_error(proc: subprocess.CompletedProcess, *texts: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    for text in texts:
        assert text in line, line


def assert_main_error(capsys, code: int, *texts: str) -> None:
    assert code == 2
    line = error_line(capsys.readouterr().err)
    for text in texts:
        assert text in line, line


# ---- a mistyped key ---------------------------------------------------------------------

def test_a_mistyped_hparam_suggests_the_closest_keys(tmp_path):
    proc = recipe("train.py", HPARAMS / "xvector_tiny_few.yaml", "--lr_shedule", "constant",
                  f"--output_folder={tmp_path}", "--device=cpu")
    assert_recipe_error(proc, "unknown hparam 'lr_shedule'", "did you mean 'lr_schedule'")
    assert len(error_line(proc.stderr)) < 200  # not every key of the file
    with pytest.raises(HparamsError, match="did you mean 'max_steps'"):
        load_hparams(HPARAMS / "xvector_tiny_few.yaml", {"max_step": 3})
    with pytest.raises(HparamsError, match="'zzzz' .*no key has a similar name"):
        check_keys(["lr", "zzzz"], ["lr", "max_steps"], "x.yaml")


def test_grid_overrides_must_name_keys_of_each_runs_file(capsys):
    with pytest.raises(SystemExit) as exit_info:
        grid_main(["list", "naive_lr", "--model", "xvector", "--set", "lr_shedule=1"])
    assert_main_error(capsys, exit_info.value.code, "unknown hparam 'lr_shedule'",
                      "did you mean 'lr_schedule'")
    with pytest.raises(HparamsError, match="num_frozen_steps"):  # wav2vec2's key only
        expand("naive_lr", models=["xvector"], extra={"num_frozen_steps": "3"})
    assert expand("naive_lr", models=["wav2vec2"], extra={"num_frozen_steps": "3"})
    assert expand("naive_lr", models=["xvector"], extra={"device": "cpu"})  # a run option
    # checked against the experiment's own file, which has keys its model's cell lacks
    runs = expand_experiments(["ssl_ecapa_tiny_few"], "naive_lr",
                              extra={"ssl_ecapa_channels": "64"})
    assert runs and {r.hparams_file for r in runs} == {"hparams/ssl_ecapa_tiny_few.yaml"}
