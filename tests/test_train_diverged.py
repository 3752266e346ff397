"""A run that diverges through train.py ends evaluated and marked diverged, not as the
untrained model (issue 10): before, its non-finite loss stopped train.py with a traceback,
and a run that had survived would have tested the step-0 (untrained) checkpoint."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from lowres.io.run_folder import read_diverged, read_results
from lowres.study.results.frame import collect

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_diverging_run_is_reported_as_diverged(prepared_manifests, tmp_path):
    manifests = tmp_path / "manifests"
    (manifests / "tiny_few").mkdir(parents=True)
    for name in ("val.csv", "val_trials.txt"):
        shutil.copy(prepared_manifests / "tiny_few" / name, manifests / "tiny_few" / name)
    shutil.copytree(prepared_manifests / "test", manifests / "test")
    nan_wav = tmp_path / "nan.wav"  # every training crop is NaN: the loss is never finite
    sf.write(nan_wav, np.full(3 * 16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    train = pd.read_csv(prepared_manifests / "tiny_few" / "train.csv")
    train.assign(wav=str(nan_wav), duration=3.0).to_csv(manifests / "tiny_few" / "train.csv",
                                                        index=False)
    out = tmp_path / "runs" / "diverging"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "VoxCeleb" / "train.py"),
         str(ROOT / "hparams" / "xvector_tiny_few.yaml"), f"--manifest_folder={manifests}",
         f"--output_folder={out}", "--device=cpu", "--batch_size=8", "--crop_seconds=1.0",
         "--max_steps=24", "--val_interval=8", "--num_workers=0", "--lr=0.005",
         "--noprogressbar", "--ckpt_interval_minutes=0", "--test_sets", "original"],
        capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    diverged = read_diverged(out)
    assert diverged["step"] == 3 and "not finite" in diverged["reason"]
    best = read_results(out, "best")
    assert best["diverged"] == diverged and best["test_sets"] == {}
    last = read_results(out, "last")
    assert last["test_sets"] == {} and "not finite" in last["diverged"]["reason"]
    row = collect(tmp_path / "runs").iloc[0]
    assert row["status"] == "finished" and row["diverged"]
