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
