"""`make demo` reduced: fewer steps; the table is complete and training helps.

Runs ``python -m lowres.demo`` (every stage, as `make demo` does, including the corpus at
the demo's channel strength) with fewer training steps, then reruns it to check that
finished work is reused.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lowres.study.grids import DEMO_SUBSETS, MODELS, expand, parse_run_path

ROOT = Path(__file__).resolve().parents[1]
CPU_DEMO = ROOT / "hparams" / "overrides" / "cpu_demo.yaml"


def test_demo_grid_takes_per_model_overrides_that_resolve(tmp_path):
    """cpu_demo.yaml's keys (common and per model) exist in every demo run's hparams file."""
    import speechbrain as sb

    from lowres.io.hparams import plain_values
    from lowres.study.grid import parse_overrides

    extra, per_model = parse_overrides(["wav2vec2.wav2vec2_source=/w2v", "seed=5"],
                                       [str(CPU_DEMO)])
    assert set(per_model) == set(MODELS) and "lr" in per_model["ecapa"]
    assert per_model["wav2vec2"]["wav2vec2_source"] == "/w2v" and extra["seed"] == "5"
    runs = expand("demo", tmp_path, extra=extra, model_extra=per_model)
    assert [(r.model, r.subset) for r in runs] == [(m, s) for m in MODELS for s in DEMO_SUBSETS]
    for run in runs:
        assert run.output_folder == tmp_path / "demo" / f"{run.model}_{run.subset}" / "trained"
        info = parse_run_path(tmp_path, run.output_folder)
        assert (info["grid"], info["model"], info["subset"]) == ("demo", run.model, run.subset)
        assert parse_run_path(tmp_path / "demo", run.output_folder)["grid"] == "demo"
        assert ("ecapa_channels" in run.overrides) == (run.model == "ecapa")
        assert ("wav2vec2_source" in run.overrides) == (run.model == "wav2vec2")
        _, _, overrides = sb.parse_arguments(run.argv()[2:])
        values = plain_values(ROOT / run.hparams_file, overrides)  # unknown key -> error
        own = {**extra, **per_model[run.model]}  # a model's own value wins
        assert values["max_steps"] == int(own["max_steps"])
        assert values["lr"] == float(own["lr"])
        assert values["test_sets"] == ["original", "extended", "hard"]
    with pytest.raises(ValueError, match="unknown model"):
        expand("demo", tmp_path, model_extra={"resnet": {"lr": 1}})

# The demo's corpus (preset default: 40 test speakers, enough trials to tell trained from
# untrained) with fewer steps than hparams/overrides/cpu_demo.yaml. The small preset is too
# small for the random-init wav2vec2 (16 training speakers: at chance after 200 steps).
REDUCED = ["--set", "max_steps=100", "--set", "val_interval=50",
           "--set", "wav2vec2.max_steps=400", "--set", "wav2vec2.val_interval=200",
           "--prepare_option", "val_trials_tiny=200"]


def run_demo(tmp: Path, *extra: str) -> str:
    cmd = [sys.executable, "-m", "lowres.demo", "--data_folder", str(tmp / "corpus"),
           "--manifest_folder", str(tmp / "manifests"),
           "--wav2vec2_folder", str(tmp / "w2v"), "--runs_root", str(tmp / "runs"),
           "--out", str(tmp / "results"), "--jobs", "2", *REDUCED,
           *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        pytest.fail(f"lowres.study.demo failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n"
                    f"{proc.stderr[-5000:]}")
    return proc.stdout


def eer(tmp: Path, model: str, column: str, test: str = "original") -> float:
    folder = tmp / "runs" / "demo" / (f"{model}_tiny_few/untrained" if column == "untrained"
                                      else f"{model}_{column}/trained")
    data = json.loads((folder / "eval" / "best" / "results.json").read_text())
    return data["test_sets"][test]["eer"]


@pytest.mark.slow
def test_reduced_demo_table_complete_and_trained_beats_untrained(tmp_path):
    out = run_demo(tmp_path)
    # 9 trained cells + 3 untrained, each evaluated on O, E and H
    for model in MODELS:
        for column in ("untrained", *DEMO_SUBSETS):
            for test in ("original", "extended", "hard"):
                assert 0 <= eer(tmp_path, model, column, test) <= 1
    # the printed table has every cell, and its numbers are the runs' own
    table = out[out.index("VoxCeleb1-O: EER"):].split("\n\n")[0]
    rows = [line for line in table.splitlines()[3:] if line.strip()]
    assert len(rows) == 3 and "—" not in table
    for model, row in zip(MODELS, rows, strict=True):
        cells = row.split()[-12:]  # 4 cells of "EER / minDCF"
        printed = [float(c) for c in cells[0::3]]
        measured = [100 * eer(tmp_path, model, c) for c in ("untrained", *DEMO_SUBSETS)]
        assert printed == pytest.approx(measured, abs=0.006)
    # training helps: each model's mean trained EER (subsets x O/E/H) is below its
    # untrained EER (mean over O/E/H); single cells of so short a run may not be.
    tests = ("original", "extended", "hard")
    for model in MODELS:
        trained = [eer(tmp_path, model, s, t) for s in DEMO_SUBSETS for t in tests]
        untrained = [eer(tmp_path, model, "untrained", t) for t in tests]
        assert sum(trained) / len(trained) < sum(untrained) / len(untrained), model
    assert not math.isnan(eer(tmp_path, "ecapa", "tiny_many_high", "hard"))
    # the corpus was made at the demo's channel strength (lowres.study.demo stage 1)
    from lowres.study.demo import build_parser

    config = json.loads((tmp_path / "corpus" / "meta" / "synthetic_config.json").read_text())
    assert config["channel_strength"] == build_parser().get_default("channel_strength")
    results = tmp_path / "results"
    for name in ("results.csv", "results.md", "demo.png", "demo.pdf"):
        assert (results / name).is_file(), name
    assert "## Demo" in (results / "results.md").read_text()
    # a rerun reuses everything: nothing trained again
    again = run_demo(tmp_path)
    assert "9 finished (skipped), 0 to run" in again
    assert again.count("untrained already evaluated") == 3
