"""slurm/*.sbatch without a cluster: syntax, array index -> run, requeue trap, skip finished.

The real one-node SLURM end-to-end test is tests/test_slurm_e2e.py.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lowres.io.run_folder import write_results
from lowres.study.grids import definitions
from lowres.study.grids.runs import expand

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "slurm").glob("*.sbatch"))


def test_one_script_per_grid_and_bash_syntax():
    assert {p.stem for p in SCRIPTS} == set(definitions.GRIDS)
    for path in [*SCRIPTS, ROOT / "slurm" / "task.sh"]:
        subprocess.run(["bash", "-n", str(path)], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_sbatch_header(script):
    text = script.read_text()
    header = re.findall(r"^#SBATCH (\S+)", text, flags=re.M)
    options = dict(h.lstrip("-").split("=", 1) if "=" in h else (h.lstrip("-"), "")
                   for h in header)
    assert options["job-name"] == script.stem
    assert options["gres"] == "gpu:1"
    assert "requeue" in options and options["signal"] == "B:USR1@120"
    assert options["open-mode"] == "append"  # a requeued task appends to its log
    assert "%A" in options["output"] and "%a" in options["output"]  # one log per task
    assert (ROOT / Path(options["output"]).parent).is_dir()
    # every #SBATCH line precedes the first command, or sbatch ignores it
    first_cmd = next(i for i, line in enumerate(text.splitlines())
                     if line.strip() and not line.startswith("#"))
    assert all(i < first_cmd for i, line in enumerate(text.splitlines())
               if line.startswith("#SBATCH"))


def _dry_run(script: str, index: int, *args: str, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "SLURM_ARRAY_TASK_ID": str(index), "LOWRES_DRY_RUN": "1"}
    return subprocess.run(["bash", f"slurm/{script}.sbatch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize("grid,model,args", [
    ("naive_lr", "xvector", []),
    ("steps", "wav2vec2", ["--subset", "tiny_few,full"]),
    ("ablation", None, ["--set", "max_steps=20"]),
    ("adaptation", "wav2vec2", ["--subset", "tiny_many_low"]),
])
def test_array_index_maps_to_the_listed_run(grid, model, args, tmp_path):
    args = [*args, "--runs_root", str(tmp_path)]
    listed = subprocess.run(
        [sys.executable, "-m", "lowres.grid", "list", grid, "--python", sys.executable,
         *(["--model", model] if model else []), *args],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()[:-1]
    runs = expand(grid, runs_root=tmp_path, models=[model] if model else None,
                  subsets=args[1:2] if args[0] == "--subset" else None)
    assert len(listed) == len(runs)
    indices = sorted({0, len(runs) // 2, len(runs) - 1})
    for i in indices:
        proc = _dry_run(grid, i, *([model] if model else []), *args)
        assert proc.returncode == 0, proc.stderr
        command = proc.stdout.splitlines()[-1]
        assert command == listed[i]
        assert shlex.split(command)[-1] == f"--output_folder={runs[i].output_folder}"
    proc = _dry_run(grid, len(runs), *([model] if model else []), *args)
    assert proc.returncode != 0 and "out of range" in proc.stderr


def test_sbatch_helper_prints_array_per_model(monkeypatch):
    env = {**os.environ, "LOWRES_SBATCH_24GB": "--constraint=gpu24gb"}
    env.pop("LOWRES_SBATCH_11GB", None)
    out = subprocess.run(
        [sys.executable, "-m", "lowres.grid", "sbatch", "naive_lr", "--set", "max_steps=5"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    lines = [shlex.split(line) for line in out.splitlines() if line.startswith("sbatch")]
    assert [line[line.index("slurm/naive_lr.sbatch") + 1] for line in lines] == [
        "xvector", "ecapa", "wav2vec2"]
    assert [line[1] for line in lines] == ["--array=0-23%3", "--array=0-23%3", "--array=0-23%6"]
    assert "--constraint=gpu24gb" in lines[2] and "--constraint=gpu24gb" not in lines[0]
    assert all("--set" in line and "max_steps=5" in line for line in lines)


FAKE_TRAIN = textwrap.dedent("""\
    import os, sys, time
    from pathlib import Path
    from lowres.io.run_folder import write_results
    out = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output_folder=")))
    out.mkdir(parents=True, exist_ok=True)
    (out / "started").write_text(str(os.getpid()))
    stop = Path(os.environ["STOP"])
    for _ in range(400):
        if stop.exists():
            break
        time.sleep(0.05)
    write_results(out, "best", {})
""")


def _fake_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.txt\n')
    scontrol.chmod(0o755)
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "LOWRES_TRAIN_SCRIPT": str(fake), "STOP": str(tmp_path / "stop"),
            "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "2", "SLURM_JOB_ID": "79",
            "SLURM_SUBMIT_DIR": str(ROOT)}


def test_usr1_requeues_the_task_and_leaves_train_running(tmp_path):
    env = _fake_env(tmp_path)
    runs_root = tmp_path / "runs"
    run = expand("naive_lr", runs_root=runs_root, models=["ecapa"])[2]
    proc = subprocess.Popen(
        ["bash", str(ROOT / "slurm/naive_lr.sbatch"), "ecapa", "--runs_root", str(runs_root)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = run.output_folder / "started"
        for _ in range(300):
            if started.exists():
                break
            time.sleep(0.05)
        assert started.exists(), "fake train.py never started"
        proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@120 sends to the batch shell
        for _ in range(100):
            if (tmp_path / "scontrol.txt").exists():
                break
            time.sleep(0.05)
        assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "77_2"]
        train_pid = int(started.read_text())
        os.kill(train_pid, 0)  # train.py still runs: USR1 went to the batch shell only
        (tmp_path / "stop").write_text("")
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "USR1 received: requeueing 77_2" in out
    assert run.finished()


def test_finished_run_is_skipped_on_resubmission(tmp_path):
    env = _fake_env(tmp_path)
    runs_root = tmp_path / "runs"
    run = expand("naive_lr", runs_root=runs_root, models=["ecapa"])[2]
    write_results(run.output_folder, "best", {})
    proc = subprocess.run(["bash", str(ROOT / "slurm/naive_lr.sbatch"), "ecapa", "--runs_root",
                           str(runs_root)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already finished, skipping" in proc.stdout
    assert not (run.output_folder / "started").exists()


def test_small_gpu_is_reported_for_wav2vec2(tmp_path):
    env = _fake_env(tmp_path)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 11264\n")  # an 11 GB card
    smi.chmod(0o755)
    (tmp_path / "stop").write_text("")
    for model, warned in (("wav2vec2", True), ("xvector", False)):
        proc = subprocess.run(["bash", str(ROOT / "slurm/naive_lr.sbatch"), model,
                               "--runs_root", str(tmp_path / model)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert ("ran on a 24 GB GPU in the study, this one has 11 GiB" in proc.stderr) == warned


def test_missing_repository_is_reported(tmp_path):
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", "SLURM_SUBMIT_DIR": str(tmp_path)}
    env.pop("LOWRES_ROOT", None)
    proc = subprocess.run(["bash", str(ROOT / "slurm" / "naive_lr.sbatch")], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "lowres repository not found" in proc.stderr
