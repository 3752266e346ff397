"""The adaptation grids: wav2vec2 adapted by the study's recipe, frozen, LoRA or adapters
under MHFA or the mean; their runs, the values each method gets, command lines and SLURM."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lowres.study.grids import definitions
from lowres.study.grids.definitions import DEMO_SUBSETS, STEPS_CELLS, SUBSETS, format_value
from lowres.study.grids.runner import parse_overrides
from lowres.study.grids.runs import expand, parse_run_path

ROOT = Path(__file__).resolve().parents[1]
CPU_DEMO = ROOT / "hparams" / "overrides" / "cpu_demo.yaml"
# method -> (ssl_adaptation, ssl_pooling), written out from the grid's question
BACKBONE = {"study": ("full", "last"), "frozen_mhfa": ("frozen", "mhfa"),
            "lora_mhfa": ("lora", "mhfa"), "adapter_mhfa": ("adapter", "mhfa"),
            "lora_mean": ("lora", "last")}


def test_each_subset_has_every_method_at_its_learning_rates_and_the_study_seeds(tmp_path):
    runs = expand("adaptation", runs_root=tmp_path)
    assert len(runs) == 4 * (1 + 4 * 3) * 3  # subsets x (study + 4 methods x 3 lrs) x seeds
    assert len({run.output_folder for run in runs}) == len(runs)
    assert list(dict.fromkeys(run.tag for run in runs)) == list(BACKBONE)
    lrs: dict[str, set] = {}
    for run in runs:
        lr, seeds = STEPS_CELLS["wav2vec2"][run.subset]
        o = run.overrides
        assert run.model == "wav2vec2" and run.hparams_file == f"hparams/{run.cell}.yaml"
        assert o["seed"] in seeds
        assert run.output_folder == (tmp_path / "adaptation" / run.cell / run.tag
                                     / f"lr{format_value(o['lr'])}_seed{o['seed']}")
        assert (o["ssl_adaptation"], o["ssl_pooling"]) == BACKBONE[run.tag]
        info = parse_run_path(tmp_path, run.output_folder)
        assert (info["grid"], info["subset"], info["tag"], info["lr"], info["seed"]) == (
            "adaptation", run.subset, run.tag, o["lr"], o["seed"])
        if run.tag == "study":  # the study's recipe at its lr, first cycle frozen
            assert o["lr"] == lr and "wav2vec_initially_frozen" not in o
            assert "ssl_adaptation_lr" not in o
            continue
        assert o["wav2vec_initially_frozen"] is False  # the added weights train from step 0
        lrs.setdefault(run.tag, set()).add((run.subset, o["lr"], o.get("ssl_adaptation_lr")))
        if run.tag == "frozen_mhfa":  # train.py refuses an adaptation lr without weights
            assert "ssl_adaptation_lr" not in o
        else:  # LoRA and adapters below the back-end's rate
            assert o["ssl_adaptation_lr"] < o["lr"]
    for tag, points in lrs.items():  # three rates, the same on every subset
        assert len(points) == 3 * len(SUBSETS), tag
        assert len({(lr, ssl_lr) for _, lr, ssl_lr in points}) == 3, tag


def test_a_method_keeps_its_values_over_the_command_and_its_section_changes_them(tmp_path):
    runs = expand("adaptation", runs_root=tmp_path, subsets=["tiny_few"], n_seeds=1,
                  extra={"lr": 1.0, "ssl_pooling": "weighted_sum", "max_steps": 10},
                  model_extra={"wav2vec2": {"wav2vec_initially_frozen": True}},
                  stage_extra={"lora_mhfa": {"lora_rank": 4, "lr": 2.0e-3}})
    assert len(runs) == 1 + 4 * 3
    for run in runs:
        point = parse_run_path(tmp_path, run.output_folder)
        o = run.overrides
        assert o["max_steps"] == 10  # not a method's value: the command's
        assert o["ssl_pooling"] == BACKBONE[run.tag][1]
        assert o["lr"] == (2.0e-3 if run.tag == "lora_mhfa" else point["lr"])
        assert ("lora_rank" in o) == (run.tag == "lora_mhfa")
        if run.tag != "study":
            assert o["wav2vec_initially_frozen"] is False
    with pytest.raises(ValueError, match="unknown stage"):
        expand("adaptation", stage_extra={"lora_mhfaa": {"lr": 1.0}})


def test_demo_grid_fine_tunes_the_demos_pretrained_model_at_the_demos_sizes(tmp_path):
    pretrained = tmp_path / "pretrain" / "demo" / "pretrained"
    extra, per_model = parse_overrides(
        [f"manifest_folder={tmp_path}/manifests_demo", f"data_folder={tmp_path}/corpus",
         f"pretrained.wav2vec2_source={pretrained}",
         f"random_init.wav2vec2_source={tmp_path}/random"], [str(CPU_DEMO)])
    runs = expand("adaptation_demo", runs_root=tmp_path, extra=extra, model_extra=per_model)
    assert len(runs) == len(DEMO_SUBSETS) * len(BACKBONE) * 3  # one lr per method, 3 seeds
    assert {run.subset for run in runs} == set(DEMO_SUBSETS)
    import speechbrain as sb

    from lowres.io.hparams import plain_values

    for run in runs:
        assert run.output_folder.parent.parent.parent == tmp_path / "adaptation_demo"
        o = run.overrides
        assert o["wav2vec2_source"] == str(pretrained)  # never the random start's
        assert o["reset_weights"] == "false" and o["max_steps"] == "600"
        assert o["num_frozen_steps"] == "150"  # the demo's pretrained start: 150 of 600
        assert o["wav2vec_initially_frozen"] == ("true" if run.tag == "study" else False)
        assert o["lr"] == parse_run_path(tmp_path, run.output_folder)["lr"]
        assert (o["ssl_adaptation"], o["ssl_pooling"]) == BACKBONE[run.tag]
    for run in runs[::3][:len(BACKBONE)]:  # train.py parses each method's command
        hparams_file, _, overrides = sb.parse_arguments(run.argv()[2:])
        values = plain_values(ROOT / hparams_file, overrides)
        assert values["ssl_adaptation"] == BACKBONE[run.tag][0]
        assert values["max_steps"] == 600 and values["batch_size"] == 32
        assert values["mhfa_heads"] < 64 and values["adapter_bottleneck"] < 64  # demo sizes


@pytest.mark.parametrize("lrs", ["[{lr: 1.0e-3}, {lr: 1.0e-3}]", "[{ssl_adaptation_lr: 1.0e-3}]",
                                 "[{lr: fast}]", "1.0e-3"])
def test_a_broken_method_file_is_refused_by_name(tmp_path, monkeypatch, lrs):
    text = definitions.ADAPTATION_FILE.read_text().replace(
        "adaptation: [{lr: 1.78e-3}, {lr: 5.62e-3}, {lr: 1.78e-2}]", f"adaptation: {lrs}")
    broken = tmp_path / "adaptation.yaml"
    broken.write_text(text)
    monkeypatch.setattr(definitions, "ADAPTATION_FILE", broken)
    definitions.adaptation_methods.cache_clear()
    try:
        with pytest.raises(ValueError, match="frozen_mhfa, lrs of adaptation: expected a list"):
            expand("adaptation")
    finally:
        definitions.adaptation_methods.cache_clear()


def _grid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lowres.grid", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_cli_lists_the_grid_and_submits_it_as_one_wav2vec2_array(tmp_path):
    listed = _grid("list", "adaptation", "--runs_root", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1].startswith("# 156 runs (0 finished)")
    sbatch = _grid("sbatch", "adaptation")
    lines = [shlex.split(line) for line in sbatch.stdout.splitlines()
             if line.startswith("sbatch")]
    assert len(lines) == 1 and "--array=0-155%3" in lines[0]
    assert lines[0][lines[0].index("slurm/adaptation.sbatch") + 1] == "wav2vec2"
    local = _grid("sbatch", "adaptation_demo")
    assert local.returncode != 0 and "runs locally only" in local.stderr
