"""Grid definitions (lowres/study/grids/) against the study's commands, and the local runner."""

import itertools
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lowres.io.run_folder import read_results, write_results
from lowres.study.grids import definitions
from lowres.study.grids.definitions import ALL_TEST_SETS, format_value
from lowres.study.grids.runs import expand, parse_run_path

ROOT = Path(__file__).resolve().parents[1]
SEED_MD = ROOT.parent / "shared" / "docs" / "SEED.md"  # beside the checkout, as in CI


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def seed_md_runs(text: str) -> list[tuple]:
    """Expand every `run.py -m` command of SEED.md into (grid, hparams, tag, overrides).

    This is an independent translation of the hydra syntax, written from SEED.md alone.
    """
    runs = []
    for block in re.findall(r"```\n(python3? run\.py -m.*?)```", text, flags=re.S):
        tokens = shlex.split(block.replace("\\\n", " "))[3:]
        sweep: dict[str, list[str]] = {}
        for token in tokens:
            key, _, values = token.partition("=")
            sweep[key] = values.split(",")
        tag = sweep.pop("tag")[0]
        grid = {"naive_grid": "naive_lr", "detailed_grid": "detailed_lr",
                "step_exp": "steps"}.get(tag, "ablation")
        fixed: dict[str, object] = {}
        for key, values in list(sweep.items()):
            if len(values) != 1 or key in ("+experiment", "optim.algo.lr", "seed",
                                           "trainer.max_steps"):
                continue
            value = values[0]
            sweep.pop(key)
            if key.startswith("hydra"):
                continue
            if key == "data.use_additional_test_sets":
                assert value == "true"
                fixed.update(ALL_TEST_SETS)
            elif key == "optim/schedule":
                fixed["lr_schedule"] = value
            elif key.startswith("++optim.schedule.scheduler.step_size_"):
                assert _value(value) == 25_000
                fixed["lr_schedule"] = "one_cycle"
            elif key == "network/regularisation":
                fixed["regularisation"] = value.removeprefix("wav2vec2_")
            elif key.startswith("++network."):
                fixed[key.removeprefix("++network.")] = _value(value)
            else:
                fixed[key] = _value(value)
        axes = {k: v for k, v in sweep.items()}
        names = list(axes)
        for combo in itertools.product(*(axes[n] for n in names)):
            point = dict(zip(names, combo, strict=True))
            experiment = point.pop("+experiment")
            # every data config of the study had use_additional_test_sets: true (docs/study.md,
            # 'Training and evaluation in the published runs'), so every run, whatever its
            # command said, tested O, E and H
            overrides = {"evaluate_after_training": True, **ALL_TEST_SETS, **fixed}
            if "optim.algo.lr" in point:
                overrides["lr"] = _value(point.pop("optim.algo.lr"))
            if "trainer.max_steps" in point:
                overrides["max_steps"] = _value(point.pop("trainer.max_steps"))
            if "seed" in point:
                overrides["seed"] = _value(point.pop("seed"))
            assert not point, point
            runs.append((grid, f"hparams/{experiment}.yaml", tag if grid == "ablation" else None,
                         frozenset(overrides.items())))
    return runs


def our_runs(grid: str) -> list[tuple]:
    return [(r.grid, r.hparams_file, r.tag, frozenset(r.overrides.items()))
            for r in expand(grid)]


def test_counts_match_the_study():
    counts = {grid: len(expand(grid)) for grid in definitions.STUDY_GRIDS}
    assert counts == {"naive_lr": 72, "detailed_lr": 72, "steps": 144, "ablation": 70}
    for grid in ("naive_lr", "detailed_lr"):
        for model in definitions.MODELS:
            assert len(expand(grid, models=[model])) == 24
    for model in definitions.MODELS:
        assert len(expand("steps", models=[model])) == 48
    assert len(expand("ablation", subsets=["tiny_few"])) == 35
    assert len(expand("ablation", tags=["baseline"])) == 4  # 2 subsets x 2 seeds


@pytest.mark.skipif(not SEED_MD.is_file(), reason=f"{SEED_MD} not available")
@pytest.mark.parametrize("grid", list(definitions.STUDY_GRIDS))
def test_grid_equals_seed_md_commands(grid):
    """Every run of SEED.md, translated independently, is exactly one run of ours."""
    theirs = [run for run in seed_md_runs(SEED_MD.read_text()) if run[0] == grid]
    ours = our_runs(grid)
    assert len(ours) == len(set(ours))
    assert len(theirs) == len(set(theirs))
    assert set(ours) - set(theirs) == set(), "runs of ours not in SEED.md"
    assert set(theirs) - set(ours) == set(), "SEED.md runs missing from our grid"


def test_spot_checks_without_seed_md():
    """A few runs written out by hand from the study's commands (docs/study.md, 'Steps' and
    'Ablation'); runs in CI without ../shared."""
    steps = {(r.model, r.subset): r for r in expand("steps")}
    r = steps["wav2vec2", "tiny_many_high"]
    assert r.overrides["lr"] == 1.782e-4 and r.overrides["enroll_training_data"] is True
    assert {x.overrides["seed"] for x in expand("steps", models=["xvector"],
                                                 subsets=["tiny_few"])} == {7348, 12935, 6622}
    assert steps["xvector", "full"].overrides["post_process_scores"] is False
    detailed = expand("detailed_lr", models=["xvector"], subsets=["tiny_many_low"])
    assert [r.overrides["lr"] for r in detailed] == [1.78e-5, 3.16e-5, 5.62e-5,
                                                     1.78e-4, 3.16e-4, 5.62e-4]
    abl = {(r.subset, r.tag, r.overrides["seed"]): r.overrides for r in expand("ablation")}
    assert abl["tiny_few", "weights_freeze_cycle", 11469] == {
        "evaluate_after_training": True, "completely_freeze_feature_extractor": False,
        "wav2vec_initially_frozen": True, "num_frozen_steps": 12500, "seed": 11469,
        **ALL_TEST_SETS}
    assert abl["tiny_many_high", "lr_1_cycle", 787]["lr_schedule"] == "one_cycle"
    assert ("tiny_few", "baseline", 11469) not in abl  # the baseline ran with 2 seeds
    for grid in definitions.ALL_GRIDS:  # every run tests on O, E and H, as every original run
        assert all(r.overrides["test_sets"] == ALL_TEST_SETS["test_sets"] for r in expand(grid))
    # runs without a seed (the LR grids) get the recipe's: the original's default
    assert all("seed" not in r.overrides for r in expand("naive_lr") + expand("detailed_lr"))
    from lowres.io.hparams import plain_values

    assert plain_values(ROOT / "hparams" / "xvector_tiny_few.yaml")["seed"] == 42133724


def test_command_line_and_folder_encoding():
    run = expand("steps", runs_root="R", models=["xvector"], subsets=["tiny_few"])[0]
    assert run.command() == shlex.join([sys.executable]) + (
        " recipes/VoxCeleb/train.py hparams/xvector_tiny_few.yaml "
        "--evaluate_after_training=true '--test_sets=[original, extended, hard]' "
        "--lr=1.78e-02 --enroll_training_data=false --post_process_scores=false "
        "--max_steps=25000 --seed=7348 "
        "--output_folder=R/steps/xvector_tiny_few/lr1.78e-02_steps25000_seed7348")
    abl = expand("ablation", runs_root="R", tags=["reg_mask"], subsets=["tiny_few"])[0]
    assert abl.output_folder == Path("R/ablation/wav2vec2_tiny_few/reg_mask/seed11469")
    assert abl.hparams_file == "hparams/ablation_wav2vec2_tiny_few.yaml"


def test_folders_unique_and_parse_back(tmp_path):
    for grid in definitions.GRIDS:
        runs = expand(grid, runs_root=tmp_path)
        assert len({r.output_folder for r in runs}) == len(runs)
        for r in runs:
            info = parse_run_path(tmp_path, r.output_folder)
            assert (info["grid"], info["model"], info["subset"], info["tag"]) == (
                grid, r.model, r.subset, r.tag)
            if r.tag == "large_margin":  # the folder has its grid point: its parent's lr
                assert info["lr"] == definitions.STEPS_CELLS[r.model][
                    r.subset][0]
            else:
                assert info["lr"] == r.overrides.get("lr")
            assert info["seed"] == (r.overrides.get("seed") if grid in (
                "steps", "ablation", "modern", "adaptation") else None)
            if grid != "modern":  # the large-margin stage's steps are not in its folder
                assert info["max_steps"] == r.overrides.get("max_steps")


def test_format_value_is_exact_and_yaml_float():
    import yaml
    for x in (1e-7, 1.78e-3, 1.782e-4, 5.62e-6, 0.1 + 0.2):
        text = format_value(x)
        assert "." in text and float(text) == x
        assert yaml.safe_load(f"v: {text}")["v"] == x  # even YAML 1.1 reads it as a float
    assert format_value(True) == "true" and format_value(25000) == "25000"


def test_extra_overrides_replace_grid_values_not_folders():
    base = expand("steps", models=["ecapa"], subsets=["full"])
    cpu = expand("steps", models=["ecapa"], subsets=["full"],
                 extra={"max_steps": "20", "batch_size": "4"})
    assert [r.output_folder for r in base] == [r.output_folder for r in cpu]
    argv = cpu[0].argv()
    keys = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
    assert len(keys) == len(set(keys))  # no key twice (SpeechBrain would reject the yaml)
    assert "--max_steps=20" in argv and "--batch_size=4" in argv
    with pytest.raises(ValueError, match="unknown model"):
        expand("naive_lr", models=["resnet"])


def test_step_scale_shrinks_every_step_count_together():
    steps = expand("steps", models=["wav2vec2"], subsets=["tiny_few"], step_scale=0.001)
    assert [r.overrides["max_steps"] for r in steps[::3]] == [25, 50, 100, 400]
    assert {r.overrides["num_frozen_steps"] for r in steps} == {12}
    abl = {r.tag: r.overrides for r in expand("ablation", subsets=["tiny_few"],
                                              step_scale=0.001)}
    assert abl["baseline"]["max_steps"] == 50 and abl["baseline"]["num_frozen_steps"] == 12
    assert abl["lr_1_cycle"]["one_cycle_half_steps"] == 25
    assert "one_cycle_half_steps" not in abl["lr_constant"]
    x = expand("naive_lr", models=["xvector"], step_scale=0.0001, extra={"max_steps": "3"})
    assert x[0].overrides["max_steps"] == "3" and "num_frozen_steps" not in x[0].overrides
    assert expand("naive_lr", models=["ecapa"], step_scale=1e-9)[0].overrides["max_steps"] == 1
    with pytest.raises(ValueError, match="positive"):
        expand("naive_lr", step_scale=-1)


def test_no_equals_sign_reaches_speechbrain(tmp_path):
    """SpeechBrain splits `--key=value` at every '=': folders and values must not have one."""
    for grid in definitions.GRIDS:
        for run in expand(grid, runs_root=tmp_path):
            for arg in run.argv()[3:]:
                assert arg.count("=") == 1, arg
    with pytest.raises(ValueError, match="no '='"):
        expand("naive_lr", runs_root=tmp_path / "a=b")
    with pytest.raises(ValueError, match="cannot take '='"):
        expand("naive_lr", extra={"data_folder": "/x=y"})


def test_list_cli_prints_commands_and_count(tmp_path):
    over = tmp_path / "cpu.yaml"
    over.write_text("max_steps: 10\nprecision: fp32\n")
    out = subprocess.run(
        [sys.executable, "-m", "lowres.grid", "list", "naive_lr", "--model", "xvector",
         "--overrides", str(over), "--set", "batch_size=8", "--runs_root", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 25 and out[-1].startswith("# 24 runs (0 finished)")
    # the interpreter running lowres.grid (a bare `python` may lack lowres's packages)
    assert out[0].startswith(f"{shlex.join([sys.executable])} recipes/VoxCeleb/train.py "
                             "hparams/xvector_full.yaml "
                             "--evaluate_after_training=true '--test_sets=[original, extended, "
                             "hard]' --lr=1.0e-07 ")
    assert all("--max_steps=10 --precision=fp32 --batch_size=8 " in line for line in out[:-1])


FAKE_TRAIN = textwrap.dedent("""\
    import os, sys
    from pathlib import Path
    from lowres.io.run_folder import write_results
    out = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output_folder=")))
    with open(os.environ["CALLS"], "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    if "--lr=1.0e-02" in sys.argv:
        sys.exit(3)  # one run fails
    write_results(out, "best", {"original": {"eer": 0.1}})
""")


def test_local_runner_skips_finished_runs(tmp_path):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    calls = tmp_path / "calls.txt"
    runs_root = tmp_path / "runs"
    env = {**__import__("os").environ, "LOWRES_TRAIN_SCRIPT": str(fake), "CALLS": str(calls)}
    runs = expand("naive_lr", runs_root=runs_root, models=["xvector"], subsets=["tiny_few"])
    for done in runs[:2]:  # two runs finished before
        write_results(done.output_folder, "best", {})
    cmd = [sys.executable, "-m", "lowres.grid", "run", "naive_lr", "--model", "xvector",
           "--subset", "tiny_few", "--runs_root", str(runs_root), "--jobs", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # lr=1e-2 failed
    assert "6 runs, 2 finished (skipped), 4 to run, 2 at a time" in proc.stdout
    assert "FAILED (exit 3)" in proc.stdout
    called = calls.read_text().splitlines()
    assert sorted(line.split("--lr=")[1][:7] for line in called) == [
        "1.0e-02", "1.0e-03", "1.0e-04", "1.0e-05"]
    assert all(r.finished() for r in runs[:5]) and not runs[5].finished()
    assert read_results(runs[3].output_folder)
    # second pass: only the failed run is tried again
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert "5 finished (skipped), 1 to run" in proc.stdout
    assert len(calls.read_text().splitlines()) == 5
    assert (runs[5].output_folder / "grid_run.log").read_text().count("# ") == 2


def test_every_run_resolves_against_its_hparams_file(tmp_path):
    """Each command, parsed by SpeechBrain exactly as train.py parses it, resolves against
    its hparams file (no unknown key, no placeholder left) to the grid's values."""
    import speechbrain as sb

    from lowres.io.hparams import plain_values

    sample = []  # every hparams file and every ablation variant, a fifth of the LR/steps runs
    for grid in definitions.GRIDS:
        seen = set()
        for i, run in enumerate(expand(grid, runs_root=tmp_path)):
            key = (run.hparams_file, run.tag)
            if key not in seen or (grid != "ablation" and i % 5 == 0):
                sample.append((grid, run))
                seen.add(key)
    assert len(sample) > 80
    for grid, run in sample:
        hparams_file, _, overrides = sb.parse_arguments(run.argv()[2:])
        assert hparams_file == run.hparams_file
        values = plain_values(ROOT / hparams_file, overrides)
        assert values["output_folder"] == str(run.output_folder)
        for key, value in run.overrides.items():
            if key == "test_sets":
                assert values[key] == ["original", "extended", "hard"]
            else:
                assert values[key] == value, (run.command(), key)
        if grid == "ablation":
            assert values["lr"] == definitions.ABLATION_LR[run.subset]
            assert values["max_steps"] == 50000 and values["lr_schedule"] in (
                "cyclic", "constant", "exp_decay", "one_cycle")
