"""The modern grid (issue 13): the study's recipe, + augmentation, + averaging and a
large-margin stage, + AS-norm; its runs, command lines, dependencies and results table."""

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lowres.io.run_folder import hyperparams_path, write_results
from lowres.study.grids import definitions
from lowres.study.grids.definitions import format_value
from lowres.study.grids.runs import expand
from lowres.study.results.figures import plot_modern
from lowres.study.results.frame import collect
from lowres.study.results.tables import MODERN_STEPS, modern_table, with_mean_columns

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ROOT / "hparams" / "overrides"
AUGMENT_KEYS = ("augment_noise", "augment_music", "augment_babble", "augment_reverb",
                "speed_perturb")


def _yaml(name: str) -> dict:
    return yaml.safe_load((OVERRIDES / f"{name}.yaml").read_text())


def test_every_cell_has_the_three_stages_at_the_steps_grid_lr_and_seeds(tmp_path):
    runs = expand("modern", runs_root=tmp_path)
    assert len(runs) == 3 * 4 * 3 * 3  # models x subsets (tiny and full) x seeds x stages
    lm = _yaml("large_margin")
    for run in runs:
        lr, seeds = definitions.STEPS_CELLS[run.model][run.subset]
        assert run.overrides["seed"] in seeds
        assert run.hparams_file == f"hparams/{run.model}_{run.subset}.yaml"
        assert run.output_folder == (tmp_path / "modern" / run.cell / run.tag
                                     / f"lr{format_value(lr)}_seed{run.overrides['seed']}")
        augmented = [run.overrides.get(k) for k in AUGMENT_KEYS]
        if run.tag == "study":
            assert augmented == [None] * 5 and run.parent is None
            assert run.overrides["lr"] == lr and run.overrides["post_process_scores"] is False
            assert "max_steps" not in run.overrides  # the recipe's 50k
        elif run.tag == "augment":
            assert augmented == [True] * 5 and run.parent is None
            assert run.overrides["lr"] == lr and "margin" not in run.overrides
        else:
            assert run.tag == "large_margin" and augmented == [True] * 5
            parent = run.output_folder.parent.parent / "augment" / run.output_folder.name
            assert run.parent == parent and run.overrides["init_from_run"] == str(parent)
            assert run.overrides["margin"] == lm["margin"] == 0.5
            assert run.overrides["crop_seconds"] == 6.0
            assert run.overrides["max_steps"] == lm["max_steps"]
            assert run.overrides["lr"] == lm[run.model]["lr"]  # the stage's own lr
            assert run.overrides["average_checkpoints"] == 3
            assert run.overrides["post_process_scores"] is True
            assert run.overrides["enroll_training_data"] is True
            if run.model == "wav2vec2":  # its parent ran the frozen first cycle
                assert run.overrides["wav2vec_initially_frozen"] is False
    tags = [run.tag for run in runs[:3]]
    assert tags == list(definitions.MODERN_STAGES)


def test_common_overrides_leave_the_stage_its_own_values(tmp_path):
    runs = expand("modern", runs_root=tmp_path, models=["ecapa"], subsets=["tiny_few"],
                  extra={"max_steps": 300, "crop_seconds": 1.0, "batch_size": 32},
                  model_extra={"ecapa": {"lr": 5e-3}},
                  stage_extra={"large_margin": {"val_interval": 25}}, n_seeds=1)
    study, augment, lm = runs
    assert study.overrides["max_steps"] == augment.overrides["max_steps"] == 300
    assert study.overrides["lr"] == 5e-3 and study.overrides["crop_seconds"] == 1.0
    assert lm.overrides["max_steps"] == 2500 and lm.overrides["crop_seconds"] == 6.0
    assert lm.overrides["lr"] == 1e-4 and lm.overrides["batch_size"] == 32
    assert lm.overrides["val_interval"] == 25 and "val_interval" not in study.overrides
    scaled = expand("modern", runs_root=tmp_path, models=["ecapa"], subsets=["tiny_few"],
                    step_scale=0.01, n_seeds=1)
    assert [r.overrides["max_steps"] for r in scaled] == [500, 500, 25]
    with pytest.raises(ValueError, match="unknown stage"):
        expand("modern", stage_extra={"large_margn": {"lr": 1}})
    with pytest.raises(ValueError, match="apply to the modern, demo, adaptation"):
        expand("steps", stage_extra={"large_margin": {"lr": 1}})
    with pytest.raises(ValueError, match="set by the grid"):
        expand("modern", extra={"init_from_run": "x"})


def test_cli_stage_sections_seeds_and_resolved_commands(tmp_path):
    over = tmp_path / "cpu.yaml"
    over.write_text("max_steps: 10\nlarge_margin:\n  max_steps: 4\n")
    out = subprocess.run(
        [sys.executable, "-m", "lowres.grid", "list", "modern", "--model", "xvector",
         "--subset", "tiny_many_high", "--n_seeds", "1", "--overrides", str(over),
         "--set", "large_margin.val_interval=2", "--runs_root", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-1].startswith("# 3 runs")
    lines = [shlex.split(line) for line in out[:-1]]
    assert [a for a in lines[0] if a.startswith("--max_steps")] == ["--max_steps=10"]
    assert "--max_steps=4" in lines[2] and "--val_interval=2" in lines[2]
    assert "--val_interval=2" not in lines[1]

    import speechbrain as sb

    from lowres.io.hparams import plain_values

    for line in lines:  # train.py parses each command against its hparams file
        hparams_file, _, overrides = sb.parse_arguments(line[2:])
        values = plain_values(ROOT / hparams_file, overrides)
        assert values["speed_perturb"] is ("--speed_perturb=true" in line)
    assert values["init_from_run"].endswith("augment/lr1.78e-03_seed32188")
    assert values["margin"] == 0.5 and values["average_checkpoints"] == 3


FAKE_TRAIN = textwrap.dedent("""\
    import os, sys
    from pathlib import Path
    from lowres.io.run_folder import is_finished, write_results
    args = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--"))
    out = Path(args["output_folder"])
    with open(os.environ["CALLS"], "a") as f:
        f.write(out.parent.name + "\\n")
    if "init_from_run" in args:  # a stage starts from a finished parent
        assert is_finished(args["init_from_run"])
    if out.parent.name == os.environ.get("FAIL_TAG"):
        sys.exit(3)
    write_results(out, "best", {"original": {"eer": 0.1}})
""")


def _runner(tmp_path, *args, fail_tag=""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "LOWRES_TRAIN_SCRIPT": str(fake), "CALLS": str(calls),
           "FAIL_TAG": fail_tag}
    cmd = [sys.executable, "-m", "lowres.grid", *args, "modern", "--model", "ecapa",
           "--subset", "tiny_few", "--runs_root", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return proc, calls.read_text().splitlines() if calls.exists() else []


def test_local_runner_starts_a_stage_after_its_parent_and_skips_it_if_the_parent_failed(
        tmp_path):
    proc, calls = _runner(tmp_path / "a", "run", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(calls) == 9 and set(calls[6:]) == {"large_margin"}  # after every parent
    proc, calls = _runner(tmp_path / "b", "run", "--jobs", "2", fail_tag="augment")
    assert proc.returncode == 1
    assert proc.stdout.count("SKIPPED (its parent") == 3
    assert "large_margin" not in calls and calls.count("augment") == 3


def test_slurm_task_refuses_a_stage_whose_parent_is_not_finished(tmp_path):
    runs = expand("modern", runs_root=tmp_path / "runs", models=["ecapa"],
                  subsets=["tiny_few"])
    index = next(i for i, run in enumerate(runs) if run.tag == "large_margin")
    proc, calls = _runner(tmp_path, "task", "--index", str(index))
    assert proc.returncode != 0 and calls == []
    assert f"starts from {runs[index].parent}, which is not finished" in proc.stderr


def test_sbatch_submits_the_stage_after_the_array_it_starts_from():
    out = subprocess.run(
        [sys.executable, "-m", "lowres.grid", "sbatch", "modern", "--model", "wav2vec2"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    commands = [line for line in out if not line.startswith("#")]
    assert len(commands) == 2
    first, second = commands
    assert first.startswith("jid_wav2vec2_0=$(sbatch --parsable ") and first.endswith(")")
    first = shlex.split(first.split("$(", 1)[1][:-1])
    second = shlex.split(second)
    assert "--array=0-23%3" in first and "--array=0-11%3" in second
    assert "--dependency=afterany:$jid_wav2vec2_0" in second
    script = first.index("slurm/modern.sbatch")
    assert first[script + 1:script + 6] == ["wav2vec2", "--tag", "study", "--tag", "augment"]
    assert second[second.index("slurm/modern.sbatch") + 1:][:3] == [
        "wav2vec2", "--tag", "large_margin"]
    # array index i of each is line i of the listed selection
    listed = subprocess.run(
        [sys.executable, "-m", "lowres.grid", "list", "modern", "--model", "wav2vec2",
         "--tag", "large_margin"], cwd=ROOT, capture_output=True, text=True,
        check=True).stdout.splitlines()
    assert listed[-1].startswith("# 12 runs")


def _results(folder: Path, eer: float, which: str = "best", as_norm: float | None = None):
    entry = {"eer": eer, "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.3, "n_trials": 100}
    if as_norm is not None:
        entry["as_norm"] = {**entry, "eer": as_norm}
    data = {"test_sets": {"original": entry}}
    if which == "averaged":
        data["averaged"] = {"by": "last", "n": 3}
    write_results(folder, which, data)


def test_results_read_each_toolbox_step_from_its_run(tmp_path):
    runs = expand("modern", runs_root=tmp_path, models=["xvector"], subsets=["tiny_few"])
    eers = {"study": 0.30, "augment": 0.25}
    for run in runs:
        run.output_folder.mkdir(parents=True)
        seed = run.overrides["seed"] % 7 / 1000  # a spread over seeds
        if run.tag == "large_margin":
            hyperparams_path(run.output_folder).write_text(
                f"init_from_run: {run.parent}\n")
            _results(run.output_folder, 0.22 + seed, as_norm=0.21 + seed)
            _results(run.output_folder, 0.20 + seed, "averaged", as_norm=0.18 + seed)
        else:
            _results(run.output_folder, eers[run.tag] + seed)
    frame = collect(tmp_path)
    seeds = [r.overrides["seed"] % 7 / 1000 for r in runs[::3]]
    expected = [100 * (base + sum(seeds) / 3) for base in (0.30, 0.25, 0.20, 0.18)]
    assert [label for label, _, _ in MODERN_STEPS] == [
        "study recipe", "+ augmentation", "+ averaging & large margin", "+ AS-norm"]
    table = modern_table(frame, "original")
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:2] == ["x-vector", "tiny_few"]
    means = [float(c.strip("*").split(" ")[0]) for c in cells[2:]]
    assert means == pytest.approx([round(e, 2) for e in expected], abs=0.006)
    assert cells[-1].startswith("**") and cells[2].endswith("(3)")
    assert modern_table(with_mean_columns(frame, ["original"]), "mean") == table
    lm = frame[frame["tag"] == "large_margin"]
    assert lm["parent_run"].str.contains("/augment/").all()
    assert (lm["averaged"] == "last 3").all()
    assert pd.Series(lm["as_norm_eer_pct_original"]).notna().all()
    assert plot_modern(frame, tmp_path)[0].name == "modern.png"


@pytest.mark.parametrize(("values", "tested"), [
    ({}, ["last", "best"]),
    ({"evaluate_last": False, "average_checkpoints": 3}, ["averaged", "best"]),
])
def test_evaluate_last_false_tests_the_best_and_averaged_checkpoints_only(
        monkeypatch, values, tested):
    from lowres.scoring.evaluation import evaluate_after_training

    calls = []
    monkeypatch.setattr("lowres.scoring.evaluation.evaluate_run",
                        lambda hparams, checkpoint, **_: calls.append(checkpoint))
    evaluate_after_training({"average_checkpoints": 0, "test_sets": ["original"],
                             **values}, "cpu")
    assert calls == tested
