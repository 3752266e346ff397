"""DET curves: probit coordinates of lowres.scoring.det and ``lowres.results --det``."""


import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri

from lowres.io.run_folder import eval_folder, hyperparams_path, scores_name, write_results
from lowres.scoring.det import det_curve, det_limits, plot_det_curve, set_det_axes
from lowres.scoring.metrics import operating_points
from lowres.scoring.trials import write_scores
from lowres.study.results.figures import _det_runs, det_figure
from lowres.study.results.report import main


def gaussian(n, d, seed):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n, int), np.zeros(n, int)]
    return np.concatenate([rng.normal(d, 1, n), rng.normal(0, 1, n)]), labels


def test_equal_variance_gaussians_give_a_straight_det_line():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, y = gaussian(20000, 2.0, 0)
    p_fa, p_miss = det_curve(s, y)
    _, pm, pf = operating_points(s, y)
    np.testing.assert_array_equal(p_miss, pm)
    np.testing.assert_array_equal(p_fa, pf)
    fig, ax = plt.subplots()
    set_det_axes(ax, *det_limits(1 / 20000, 0.16))
    line = plot_det_curve(ax, s, y, label="sys")
    assert line.get_label().startswith("sys (EER 15.")
    x, z = line.get_xydata().T
    # Phi^-1(P_miss) + Phi^-1(P_fa) = -(mu_tar - mu_non) / sigma = -2 at every threshold.
    inside = (np.abs(x) < ndtri(0.99)) & (np.abs(z) < ndtri(0.99))
    assert inside.sum() > 1000
    assert np.abs(x[inside] + z[inside] + 2.0).mean() < 0.05
    # Rates of 0 and 1 are drawn outside the axes, not dropped (no inf).
    assert np.isfinite(x).all() and x.min() < ax.get_xlim()[0]
    plt.close(fig)


def test_det_limits():
    assert det_limits(1 / 4000, 0.02) == (0.0002, 0.4)
    assert det_limits(1 / 37720, 0.02) == (0.0001, 0.4)
    assert det_limits(1 / 100, 0.45) == (0.01, 0.9)
    assert det_limits(1e-7, 0.5) == (0.0001, 0.99)


def fake_run(root, name, d, as_norm=False, model=None):
    """A run folder with eval/best/results.json and score files (original, hard), and a
    hyperparams.yaml naming ``model``."""
    folder = eval_folder(root / name, "best")
    sets = {}
    for k, test in enumerate(("original", "hard")):
        s, y = gaussian(500, d - k / 2, seed=int(10 * d) + k)
        trials = pd.DataFrame({"label": y, "path1": "a.wav", "path2": "b.wav"})
        write_scores(folder / scores_name(test), trials, s)
        sets[test] = {"eer": 0.1, "n_trials": len(y), "scores": scores_name(test)}
        if as_norm:
            write_scores(folder / scores_name(test, as_norm=True), trials, s * 1.1)
            sets[test]["as_norm"] = {"eer": 0.1, "scores": scores_name(test, as_norm=True)}
    write_results(root / name, "best", {"test_sets": sets})
    if model:
        hyperparams_path(root / name).write_text(f"model_name: {model}\n")


def test_results_cli_draws_det_curves_of_runs(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "grid/xvector", 2.0)
    fake_run(root, "grid/ecapa", 3.0, as_norm=True)
    eval_folder(root / "grid" / "unfinished", "best").mkdir(parents=True)
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out)]) == 0
    assert not (out / "det.png").exists()  # only when asked for
    assert main([str(root), "--out", str(out), "--det"]) == 0
    assert (out / "det.png").stat().st_size > 0 and (out / "det.pdf").stat().st_size > 0
    found = _det_runs(root, None)
    assert [run.label for run in found] == ["grid/ecapa", "grid/xvector"]
    # One run named: its curves per test set; a named run without scores is an error.
    (out / "det.png").unlink()
    assert main([str(root), "--out", str(out), "--det", "grid/ecapa"]) == 0
    assert (out / "det.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(root), "--out", str(out), "--det", "grid/unfinished"])
    assert exit_info.value.code == 2


def test_det_figure_of_sixteen_runs_stays_readable(tmp_path):
    """16 runs: a row of panels per model (9 x-vector runs split in two rows), at most six
    runs per panel, each run in its own colour there (its AS-norm curve dashed in the same
    colour), and every legend outside every panel, so it hides no curve."""
    root = tmp_path / "runs"
    models = ["xvector"] * 9 + ["ecapa"] * 4 + ["wav2vec2"] * 3
    for k, model in enumerate(models):
        fake_run(root, f"grid/{model}_{k:02d}", 1.5 + k / 10, as_norm=k % 4 == 0, model=model)
    fig = det_figure(root)
    fig.canvas.draw()
    axes = fig.axes
    assert [ax.get_title() for ax in axes[::2]] == [
        "x-vector (1/2): VoxCeleb1-O", "x-vector (2/2): VoxCeleb1-O", "ECAPA-TDNN: VoxCeleb1-O",
        "wav2vec2: VoxCeleb1-O"]
    renderer = fig.canvas.get_renderer()
    drawn = []
    for ax in axes:
        lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        runs = {line.get_label().split(" (EER")[0].removesuffix(", AS-norm") for line in lines}
        assert len(runs) <= 6
        solid = [line.get_color() for line in lines if line.get_linestyle() == "-"]
        assert len(set(solid)) == len(solid) == len(runs)  # one colour per run
        for line in lines:
            if line.get_linestyle() == "--":  # AS-norm: its run's colour
                run = line.get_label().split(", AS-norm")[0]
                assert line.get_color() == next(
                    x.get_color() for x in lines if x.get_label().startswith(run + " (EER"))
        drawn += sorted(runs)
        legend = ax.get_legend().get_window_extent(renderer)
        assert not any(legend.overlaps(other.get_window_extent(renderer)) for other in axes)
    assert sorted(drawn) == sorted(2 * [f"grid/{m}_{k:02d}" for k, m in enumerate(models)])
