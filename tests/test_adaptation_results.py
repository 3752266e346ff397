"""lowres.results on fabricated adaptation-grid run folders (results.json, score files,
parameters.json): seed groups, the method x subset table, every lr, the figure."""

from pathlib import Path

import numpy as np
import pytest
from test_results_intervals import scored_run, scores_for, trial_list

from lowres.io.run_folder import eval_folder, read_results, write_parameters, write_results
from lowres.scoring.bootstrap import SpeakerBootstrap, percentile_interval
from lowres.scoring.trials import read_scores
from lowres.study.grids.runs import expand
from lowres.study.results.frame import collect
from lowres.study.results.intervals import ScoreDraws, add_intervals
from lowres.study.results.report import main
from lowres.study.results.tables import adaptation_cells, adaptation_lr_table, adaptation_table

DRAWS = 200
SUBSETS = ["tiny_few", "tiny_many_high"]
TRAINABLE = {"study": 94_000_000, "frozen_mhfa": 2_300_000, "lora_mhfa": 2_600_000,
             "adapter_mhfa": 4_700_000, "lora_mean": 300_000}
# (method, lr index) -> (score separation on the test list, validation EER): frozen_mhfa's
# best test EER is at its third lr, its best validation EER at its second
QUALITY = {("frozen_mhfa", 0): (2.0, 0.30), ("frozen_mhfa", 1): (2.5, 0.20),
           ("frozen_mhfa", 2): (3.5, 0.25), ("lora_mhfa", 1): (4.0, 0.10)}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """adaptation runs on two subsets, two seeds each, on one trial list; lora_mean's on
    tiny_many_high without parameters.json (as runs trained before it was written)."""
    root = tmp_path_factory.mktemp("runs")
    trials = trial_list()
    runs = expand("adaptation", root, subsets=SUBSETS, n_seeds=2)
    for i, run in enumerate(runs):
        lrs = sorted({r.overrides["lr"] for r in runs
                      if (r.subset, r.tag) == (run.subset, run.tag)})
        separation, val_eer = QUALITY.get((run.tag, lrs.index(run.overrides["lr"])),
                                          (3.0, 0.15))
        scored_run(run.output_folder, trials, scores_for(trials, separation, i),
                   {"model_name": "wav2vec2", "subset": run.subset, **run.overrides})
        data = read_results(run.output_folder, "best")
        write_results(run.output_folder, "best", {**data, "validation": {"eer": val_eer}})
        if (run.tag, run.subset) != ("lora_mean", "tiny_many_high"):
            write_parameters(run.output_folder, TRAINABLE[run.tag], 95_000_000,
                             run.overrides["ssl_adaptation"])
    return root


def test_seeds_of_one_method_subset_and_lr_are_one_group(root, tmp_path):
    frame = add_intervals(collect(root), root, ScoreDraws(DRAWS, 3, tmp_path / "cache"))
    assert len(frame) == len(SUBSETS) * (1 + 4 * 3) * 2
    without = (frame["tag"] == "lora_mean") & (frame["subset"] == "tiny_many_high")
    assert frame[without]["trainable_parameters"].isna().all()
    assert (frame.loc[~without, "trainable_parameters"]
            == frame.loc[~without, "tag"].map(TRAINABLE)).all()
    groups = frame.groupby(["tag", "subset", "lr"])
    assert (groups.size() == 2).all() and len(groups) == len(SUBSETS) * 13
    assert (groups["seeds_lo_eer_pct_original"].nunique() == 1).all()
    # lora_mhfa and lora_mean share lrs, subsets and seeds: still two groups, each the mean
    # of its two seeds under the same speaker draws
    for tag in ("lora_mhfa", "lora_mean"):
        rows = frame[(frame["tag"] == tag) & (frame["subset"] == "tiny_few")
                     & (frame["lr"] == 5.62e-3)]
        draws = []
        for run in rows["run"]:
            scores = read_scores(eval_folder(root / run, "best") / "scores_original.txt")
            boot = SpeakerBootstrap.from_paths(scores.score, scores.label, scores.path1,
                                               scores.path2)
            draws.append(boot.metrics(boot.counts(DRAWS, 3), ["eer"])["eer"])
        low, high = percentile_interval(np.mean(draws, axis=0), 0.95)
        assert rows["seeds_lo_eer_pct_original"].tolist() == pytest.approx([100 * low] * 2)
        assert rows["seeds_hi_eer_pct_original"].tolist() == pytest.approx([100 * high] * 2)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_takes_each_methods_lr_of_lowest_validation_eer(root, tmp_path):
    frame = add_intervals(collect(root), root, ScoreDraws(DRAWS, 3, tmp_path / "cache"))
    table = adaptation_table(frame, "adaptation", "original")
    assert _cells(table[0]) == ["method", *SUBSETS]
    rows = {_cells(line)[0]: _cells(line)[1:] for line in table[2:]}
    assert list(rows) == ["study recipe", "frozen + MHFA", "LoRA + MHFA", "adapters + MHFA",
                          "LoRA + mean"]
    # validation picks the second lr, although the third tests better
    assert rows["frozen + MHFA"][0].startswith("5.62e-3: ")
    test_best = frame[(frame["tag"] == "frozen_mhfa") & (frame["subset"] == "tiny_few")] \
        .groupby("lr")["eer_pct_original"].mean().idxmin()
    assert test_best == 1.78e-2
    assert rows["study recipe"][0].startswith("5.62e-6: ")
    assert rows["study recipe"][1].startswith("1.782e-4: ")
    cell = rows["LoRA + MHFA"][0]  # the best method of the subset, in bold
    assert cell.startswith("5.62e-3: **") and cell.endswith("(2)") and " ± " in cell
    assert "** [" in cell  # the seed group's interval
    assert [cells[0].count("**") for cells in rows.values()] == [0, 0, 2, 0, 0]
    # the figure's x: the runs' parameters.json, none where they wrote none
    cells = adaptation_cells(frame, "adaptation", "original")
    assert cells["adapter_mhfa", "tiny_many_high"].trainable == TRAINABLE["adapter_mhfa"]
    assert np.isnan(cells["lora_mean", "tiny_many_high"].trainable)
    every = adaptation_lr_table(frame, "adaptation", "original")
    assert len(every) == 2 + 2 + 4 * 3  # the study's lr differs per subset: two rows
    first = _cells(every[2])
    assert first[:2] == ["study recipe", "5.62e-6"] and first[2] and not first[3]


def test_cli_writes_the_section_and_the_figure(root, tmp_path):
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--interval_draws", str(DRAWS)]) == 0
    text = (out / "results.md").read_text()
    assert "## Adapting wav2vec2 with few labels (adaptation grid; not the study's)" in text
    assert "### EER %, VoxCeleb1-O" in text and "### Every learning rate" in text
    for ext in ("png", "pdf"):
        assert (out / f"adaptation.{ext}").stat().st_size > 5000
    assert not Path(out / "adaptation_demo.png").exists()
