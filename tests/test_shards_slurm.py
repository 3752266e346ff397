"""slurm/task.sh with LOWRES_STAGE=1, without a cluster: the run's shards are copied to the
node-local folder, the run reads the copy, and the copy is removed at the end unless
another task on the node still uses it; a copy already there is not copied again."""

import fcntl
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from test_shards import manifests  # noqa: F401  (fixture)

from lowres.data.staging import stage
from lowres.study.grids.runs import expand
from prepare.shards import write_shards

ROOT = Path(__file__).resolve().parents[1]

FAKE_TRAIN = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from lowres.io.run_folder import write_results
    args = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--"))
    staged = Path(args["shard_folder"])
    assert (staged / "tiny_few" / "train" / "index.json").is_file(), staged
    out = Path(args["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "read_from").write_text(str(staged))
    write_results(out, "best", {})
""")


def run_task(tmp_path, index, shard_folder, node):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    env = {**os.environ, "LOWRES_TRAIN_SCRIPT": str(fake), "SLURM_ARRAY_TASK_ID": str(index),
           "SLURM_JOB_ID": "5", "SLURM_SUBMIT_DIR": str(ROOT), "LOWRES_STAGE": "1",
           "LOWRES_STAGE_DIR": str(node)}
    for key in ("SLURM_NTASKS", "SLURM_GPUS_ON_NODE", "LOWRES_NPROC_PER_NODE"):
        env.pop(key, None)
    proc = subprocess.run(
        ["bash", str(ROOT / "slurm/naive_lr.sbatch"), "xvector", "--subset", "tiny_few",
         "--runs_root", str(tmp_path / "runs"), "--set", "data_format=shards",
         "--set", f"shard_folder={shard_folder}"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = expand("naive_lr", runs_root=tmp_path / "runs", models=["xvector"],
                 subsets=["tiny_few"])[index]
    return proc, Path((run.output_folder / "read_from").read_text())


@pytest.mark.slow
def test_task_stages_the_shards_and_cleans_up(manifests, tmp_path):  # noqa: F811
    shards, node = tmp_path / "S", tmp_path / "node"
    write_shards(manifests, shards, ["sub"], shard_size=5)
    shutil.move(shards / "sub", shards / "tiny_few")  # the grid's subset

    proc, read_from = run_task(tmp_path, 0, shards, node)
    assert read_from == node  # the run read the node-local copy ...
    assert "shards staged in" in proc.stdout and "copied to" in proc.stderr
    assert "removed the staged shards" in proc.stdout  # ... which is gone afterwards
    assert sorted(p.name for p in node.iterdir()) == [".in_use", ".stage.lock"]

    # A copy already there is kept, and not removed while another task uses it.
    stage(shards, "tiny_few", node)
    tars = {p: p.stat().st_mtime_ns for p in node.rglob("*.tar")}
    with open(node / ".in_use", "a") as other_task:
        fcntl.flock(other_task, fcntl.LOCK_SH)
        proc, read_from = run_task(tmp_path, 1, shards, node)
    assert read_from == node and "not copied" in proc.stderr
    assert "removed the staged shards" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in node.rglob("*.tar")} == tars
