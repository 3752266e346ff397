"""Real one-node SLURM, end to end: .ci/slurm_e2e.sh (see its header for what it checks).

Runs in CI (`make test` runs the slow tests too).  Skipped only where it cannot run at all:
not root (the SLURM daemons need it) or no SLURM and no apt-get to install it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "slurm_e2e.sh"
HAVE_SLURM = all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged"))


def test_e2e_script_syntax():
    for path in [SCRIPT, *sorted((ROOT / ".ci" / "slurm").glob("*.sh"))]:
        subprocess.run(["bash", "-n", str(path)], check=True)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the SLURM daemons need root")
@pytest.mark.skipif(not HAVE_SLURM and not shutil.which("apt-get"),
                    reason="SLURM is not installed and apt-get is not available to install it")
def test_grid_on_real_slurm_with_requeue(synthetic_corpus, prepared_manifests, tmp_path):
    env = {**os.environ, "E2E_CORPUS": str(synthetic_corpus),
           "E2E_MANIFESTS": str(prepared_manifests)}
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "e2e")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 77, f"e2e script skipped itself:\n{output}"
    assert proc.returncode == 0, output
    assert "[e2e] task" in output and "requeued task resumed at step" in output
    assert output.rstrip().splitlines()[-1].endswith("(work dir " + str(tmp_path / "e2e") + ")")
    assert "PASS" in output
