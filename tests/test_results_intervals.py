"""Intervals of run folders from their score files (results.csv, seed groups, tables) and
paired comparisons of runs and seed groups (lowres.study.results.intervals / compare)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowres.io.run_folder import eval_folder, hyperparams_path, read_results, write_results
from lowres.scoring.bootstrap import SpeakerBootstrap, percentile_interval
from lowres.scoring.paired import holm
from lowres.scoring.trials import trial_metrics, write_scores
from lowres.study.grids.definitions import format_value
from lowres.study.grids.runs import expand
from lowres.study.results import intervals
from lowres.study.results.compare import compare, compare_all, seed_group
from lowres.study.results.frame import collect
from lowres.study.results.intervals import ScoreDraws, add_intervals
from lowres.study.results.report import main
from lowres.study.results.tables import lr_table, steps_table

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 200


def trial_list(speakers: int = 8, per_speaker: int = 15, non_targets: int = 300,
               seed: int = 0) -> pd.DataFrame:
    """A VoxCeleb-like list: paths ``<speaker>/<session>/<n>.wav``."""
    rng = np.random.default_rng(seed)
    tar = np.repeat(np.arange(speakers), per_speaker)
    a = rng.integers(0, speakers, non_targets)
    b = (a + rng.integers(1, speakers, non_targets)) % speakers
    spk1, spk2 = np.concatenate([tar, a]), np.concatenate([tar, b])
    return pd.DataFrame({
        "label": np.concatenate([np.ones(tar.size, int), np.zeros(non_targets, int)]),
        "path1": [f"id1{s:04d}/s{k % 3}/{k:05d}.wav" for k, s in enumerate(spk1)],
        "path2": [f"id1{s:04d}/s{(k + 1) % 3}/{k + 1:05d}.wav" for k, s in enumerate(spk2)]})


def scores_for(trials: pd.DataFrame, separation: float, noise_seed: int) -> np.ndarray:
    """Speaker effects fixed by the list (hard speakers stay hard), noise per run."""
    spk = trials.path1.str.slice(0, 7).factorize()[0]
    effect = np.random.default_rng(99).normal(0.0, 0.6, spk.max() + 1)
    noise = np.random.default_rng(noise_seed).normal(0.0, 1.0, len(trials))
    return np.round(separation * trials.label.to_numpy() + effect[spk] + noise, 6)


def scored_run(folder: Path, trials: pd.DataFrame, scores: np.ndarray, hparams: dict,
               results_intervals: dict | None = None) -> None:
    """A finished run folder evaluated on VoxCeleb1-O (results.json and its score file)."""
    folder.mkdir(parents=True, exist_ok=True)
    hyperparams_path(folder).write_text("".join(
        f"{k}: {format_value(v)}\n" for k, v in {**hparams, "output_folder": str(folder)}.items()))
    entry = {**trial_metrics(scores, trials.label.to_numpy()), "scores": "scores_original.txt"}
    if results_intervals:
        entry["intervals"] = results_intervals
    eval_folder(folder, "best").mkdir(parents=True)
    write_scores(eval_folder(folder, "best") / entry["scores"], trials, scores)
    write_results(folder, "best", {"checkpoint": {"which": "best"}, "diverged": False,
                                   "test_sets": {"original": entry}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The steps grid of wav2vec2 tiny_few (4 budgets x 3 seeds) on one trial list, the
    25k runs clearly worse; an x-vector naive-LR run on another list."""
    root = tmp_path_factory.mktemp("runs")
    trials = trial_list()
    for i, run in enumerate(expand("steps", root, models=["wav2vec2"], subsets=["tiny_few"])):
        separation = 1.5 if run.overrides["max_steps"] == 25000 else 3.0
        scored_run(run.output_folder, trials, scores_for(trials, separation, i),
                   {"model_name": "wav2vec2", "subset": "tiny_few", **run.overrides})
    other = expand("naive_lr", root, models=["xvector"], subsets=["tiny_few"])[0]
    other_list = trial_list(non_targets=280, seed=1)
    scored_run(other.output_folder, other_list, scores_for(other_list, 2.0, 50),
               {"model_name": "xvector", "subset": "tiny_few", **other.overrides})
    return root


def steps_runs(root: Path, max_steps: int) -> list[Path]:
    return sorted((root / "steps" / "wav2vec2_tiny_few").glob(f"lr*_steps{max_steps}_seed*"))


def test_seed_group_interval_is_the_mean_of_the_seeds_under_the_same_draws(runs, tmp_path):
    frame = add_intervals(collect(runs), runs, ScoreDraws(DRAWS, 3, tmp_path / "cache"))
    group = steps_runs(runs, 50000)
    per_seed = []
    for folder in group:
        scores = pd.read_csv(eval_folder(folder, "best") / "scores_original.txt", sep=" ",
                             header=None, names=["label", "score", "path1", "path2"])
        boot = SpeakerBootstrap.from_paths(scores.score, scores.label, scores.path1,
                                           scores.path2)
        per_seed.append(boot.metrics(boot.counts(DRAWS, 3), ["eer", "min_dcf_0.01"]))
    low, high = percentile_interval(np.mean([d["eer"] for d in per_seed], axis=0), 0.95)
    rows = frame[frame["run"].isin([str(f.relative_to(runs)) for f in group])]
    assert rows["seeds_lo_eer_pct_original"].tolist() == pytest.approx([100 * low] * 3)
    assert rows["seeds_hi_eer_pct_original"].tolist() == pytest.approx([100 * high] * 3)
    # each run's own interval, from its score file (its results.json has none)
    first = rows.iloc[0]
    own = percentile_interval(per_seed[0]["min_dcf_0.01"], 0.95)
    assert (first["lo_min_dcf_0.01_original"], first["hi_min_dcf_0.01_original"]) == \
        pytest.approx(own)
    assert first["lo_eer_pct_original"] <= first["eer_pct_original"] \
        <= first["hi_eer_pct_original"]
    # a group of one: its run's interval
    single = frame[frame["grid"] == "naive_lr"].iloc[0]
    assert single["seeds_lo_eer_pct_original"] == single["lo_eer_pct_original"]


def test_cached_draws_are_not_computed_again(runs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = add_intervals(collect(runs), runs, ScoreDraws(DRAWS, 0, cache))
    assert len(list(cache.glob("*.npz"))) == 13

    def refuse(*args):
        raise AssertionError("computed again")

    monkeypatch.setattr(ScoreDraws, "_compute", refuse)
    again = add_intervals(collect(runs), runs, ScoreDraws(DRAWS, 0, cache))
    pd.testing.assert_frame_equal(first, again)


def test_intervals_of_results_json_are_kept(tmp_path):
    trials = trial_list()
    run = expand("naive_lr", tmp_path, models=["ecapa"], subsets=["tiny_few"])[0]
    stored = {"method": "speaker_bootstrap", "eer": [0.01, 0.02],
              "min_dcf_0.01": [0.3, 0.4], "min_dcf_0.05": [0.2, 0.3]}
    scored_run(run.output_folder, trials, scores_for(trials, 2.0, 0),
               {"model_name": "ecapa", "subset": "tiny_few", **run.overrides}, stored)
    frame = collect(tmp_path)
    assert frame.loc[0, ["lo_eer_pct_original", "hi_eer_pct_original"]].tolist() == [1.0, 2.0]
    assert frame.loc[0, "hi_min_dcf_0.01_original"] == 0.4
    frame = add_intervals(frame, tmp_path, ScoreDraws(DRAWS, 0))
    assert frame.loc[0, ["seeds_lo_eer_pct_original", "seeds_hi_eer_pct_original"]].tolist() \
        == [1.0, 2.0]


def test_tables_show_the_interval_of_each_cell(runs, tmp_path):
    frame = add_intervals(collect(runs), runs, ScoreDraws(DRAWS, 0, tmp_path / "cache"))
    row = next(line for line in steps_table(frame, "original")
               if line.startswith("| wav2vec2 | tiny_few"))
    cells = [c.strip() for c in row.strip("|").split("|")][3:]
    group = frame[frame["max_steps"] == 50000].iloc[0]
    assert cells[1].endswith(f"[{group['seeds_lo_eer_pct_original']:.2f}, "
                             f"{group['seeds_hi_eer_pct_original']:.2f}] (3)")
    assert " ± " in cells[1] and len(cells) == 4
    x = frame[frame["grid"] == "naive_lr"].iloc[0]
    row = lr_table(frame, "naive_lr", "original")[2]
    assert f"{x['eer_pct_original']:.2f}** [{x['lo_eer_pct_original']:.2f}, " \
           f"{x['hi_eer_pct_original']:.2f}]" in row


def test_cli_writes_the_interval_columns(runs, tmp_path):
    out = tmp_path / "out"
    assert main([str(runs), "--out", str(out), "--interval_draws", str(DRAWS)]) == 0
    frame = pd.read_csv(out / "results.csv")
    for column in ("lo_eer_pct_original", "hi_eer_pct_original", "seeds_lo_eer_pct_original",
                   "lo_min_dcf_0.05_original"):
        assert frame[column].notna().all(), column
    assert "[" in (out / "results.md").read_text().split("## Steps")[1].splitlines()[4]
    assert (out / "steps.png").stat().st_size > 5000
    assert main([str(runs), "--out", str(tmp_path / "bare"), "--no_intervals"]) == 0
    bare = pd.read_csv(tmp_path / "bare" / "results.csv")
    assert not any(c.startswith(("lo_", "seeds_")) for c in bare.columns)
    assert not read_results(steps_runs(runs, 50000)[0]).get("test_sets")["original"].get(
        "intervals")  # the run folders are left as they were


def test_a_run_against_itself_cannot_be_separated(runs):
    run = steps_runs(runs, 50000)[0]
    c = compare(run, run, draws=DRAWS)
    assert (c.diff, tuple(c.interval), c.p) == (0.0, (0.0, 0.0), 1.0)
    assert not c.holds and "cannot be separated" in c.verdict


def test_paired_comparison_of_runs_and_seed_groups(runs):
    worse, better = steps_runs(runs, 25000), steps_runs(runs, 50000)
    c = compare(better[0], worse[0], metric="eer", draws=DRAWS)
    assert c.diff == pytest.approx(c.a_value - c.b_value) and c.diff < 0
    assert c.holds and c.verdict.startswith(f"{better[0]} below {worse[0]} by {-c.diff:.2f} "
                                            f"[{-c.interval.high:.2f}, {-c.interval.low:.2f}] "
                                            "points, holds (p ")
    # seed groups, as a list and as a glob pattern: the mean over their seeds
    pattern = str(better[0].parent / "lr*_steps50000_seed*")
    group = compare(pattern, worse, metric="min_dcf_0.05", draws=DRAWS)
    points = [compare(r, r, metric="min_dcf_0.05", draws=DRAWS).a_value for r in better]
    assert group.a_value == pytest.approx(np.mean(points))
    assert group.a == f"{pattern} (3 seeds)"
    family = compare_all([(better, worse), (better[0], better[1])], ["original"],
                         ["eer", "min_cllr"], draws=DRAWS)
    assert len(family) == 4 and all(f.family == 4 for f in family)
    assert [f.p_holm for f in family] == holm([f.p for f in family])
    assert "over 4 comparisons" in family[0].verdict


def test_mismatched_trial_lists_and_groups_are_refused(runs, capsys):
    naive = runs / "naive_lr" / "xvector_tiny_few"
    other = next(p for p in naive.iterdir() if p.is_dir())
    run = steps_runs(runs, 50000)[0]
    with pytest.raises(ValueError, match="different original trial lists"):
        compare(run, other, draws=DRAWS)
    with pytest.raises(ValueError, match="differ in more than their seed: max_steps"):
        seed_group(steps_runs(runs, 50000)[:1] + steps_runs(runs, 25000)[:1])
    assert seed_group(steps_runs(runs, 50000)) == steps_runs(runs, 50000)
    assert main(["compare", str(run), str(other), "--interval_draws", "50"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "different original trial lists" in err
    assert main(["compare", str(run)]) == 2
    assert "in pairs" in capsys.readouterr().err


def test_a_seed_pattern_leaves_out_its_unfinished_runs(runs, tmp_path, capsys):
    """A grid still running: a seed pattern compares the finished seeds (and says which it
    left out) instead of failing on the unfinished run's folder."""
    finished = steps_runs(runs, 50000)
    group = tmp_path / "group"
    for run in finished:
        shutil.copytree(run, group / run.name)
    running = group / finished[0].name.replace("_seed", "_seed9")
    shutil.copytree(finished[0], running)
    shutil.rmtree(running / "eval")
    (running / "hyperparams.yaml").write_text("output_folder: elsewhere\n")
    pattern = str(group / "lr*_steps50000_seed*")
    c = compare(pattern, finished[0], draws=DRAWS)
    assert c.a == f"{pattern} ({len(finished)} seeds)"
    assert f"left out 1 unfinished run(s): {running}" in capsys.readouterr().err
    for run in finished:
        shutil.rmtree(group / run.name / "eval")
    with pytest.raises(ValueError, match="none of its 4 run"):
        compare(pattern, finished[0], draws=DRAWS)


def test_cli_compares_pairs_in_one_family(runs):
    better, worse = steps_runs(runs, 50000), steps_runs(runs, 25000)
    proc = subprocess.run(
        [sys.executable, "-m", "lowres.results", "compare", str(better[0]), str(worse[0]),
         str(better[1]), str(better[2]), "--metric", "eer", "min_dcf_0.05"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("4 comparison(s)") and len(lines) == 5
    assert lines[1].startswith(f"original eer: {better[0]} ") and "below" in lines[1]
    assert "after Holm over 4 comparisons" in lines[1]
    assert f"{better[1]} and {better[2]} cannot be separated" in lines[3]


def test_score_file_names_the_calibration_of_its_scores(runs):
    run = steps_runs(runs, 50000)[0]
    data = read_results(run)
    write_results(run, "best", {**data, "calibration": {"scale": 2.0, "offset": -1.0,
                                                        "as_norm": {"scale": 3.0,
                                                                    "offset": 0.5}}})
    try:
        path, calibration = intervals.score_file(run, "original")
        assert path.name == "scores_original.txt" and tuple(calibration) == (2.0, -1.0)
        c = compare(run, run, metric="cllr", draws=DRAWS)
        assert c.a_value > 0 and c.diff == 0.0
        assert intervals.score_file(run, "original", as_norm=True) is None  # no such file
        assert intervals.score_file(run, "hard") is None
    finally:
        write_results(run, "best", data)
