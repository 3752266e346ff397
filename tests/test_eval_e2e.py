"""End to end on the small synthetic corpus: train.py (evaluating after training), eval.py
with AS-norm, and verifying recordings with the trained run (docs/study.md, 'Evaluation')."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_SEED

from lowres.io.run_folder import COHORT, eval_folder, read_results, scores_name, train_log_path
from lowres.scoring.trials import read_scores

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "VoxCeleb"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SETS = ("original", "extended", "hard")

pytestmark = pytest.mark.slow


def run(args, timeout=600):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=RECIPE, capture_output=True,
                          text=True, env=ENV, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained_run(prepared_manifests, tmp_path_factory):
    """A 100-step x-vector run on tiny_few that evaluates O/E/H after training (~2 min)."""
    out = tmp_path_factory.mktemp("run")
    proc = run(["train.py", "hparams/xvector_tiny_few.yaml",
                f"--manifest_folder={prepared_manifests}",
                f"--output_folder={out}", "--device=cpu", "--batch_size=16",
                "--crop_seconds=2.0",
                # every 50 steps across passes (a pass of tiny_few here is 6 batches)
                "--max_steps=100", "--val_interval=50", "--val_schedule=steps",
                "--num_workers=0", "--lr=0.005",
                "--lr_schedule=constant", "--noprogressbar", "--evaluate_after_training=true",
                "--test_sets=[original, extended, hard]",
                *([f"--seed={TEST_SEED}"] if TEST_SEED else [])])
    assert "embeddings (" not in proc.stderr  # --noprogressbar: the evaluation's bars too
    return out


def test_training_ends_with_results_for_best_and_last(trained_run):
    for which in ("last", "best"):
        res = read_results(trained_run, which)
        assert res["checkpoint"]["which"] == which
        assert set(res["test_sets"]) == set(SETS)
        assert isinstance(res["validation"]["eer_threshold"], float)
        for entry in res["test_sets"].values():
            assert entry["n_trials"] == len(read_scores(eval_folder(trained_run, which)
                                                        / entry["scores"]))
            assert "as_norm" not in entry  # post_process_scores is off by default
        assert all(0 <= entry["eer"] <= 1 for entry in res["test_sets"].values())
    # It learnt the training speakers: the classifier's best accuracy on the validation files
    # (8 speakers, chance 0.125) rose from 0.11-0.21 at step 0 to 0.63-0.68 in 5 seeds
    # (LOWRES_TEST_SEED unset, 1, 2, 3 and 7), a rise of 0.47-0.58. The test EERs of so
    # short a run are not asserted: O 23-34 %, E 24-33 %, H 28-43 % over the same seeds, so
    # the bounds once asserted here (35 / 40 / 45 %) sat 1.4-2.3 points from the worst seed.
    accuracy = validation_accuracy(trained_run)
    best = max(acc for step, acc in accuracy.items() if step > 0)
    assert best > accuracy[0] + 0.3, accuracy


def validation_accuracy(run) -> dict[int, float]:
    """step -> the validation accuracy train_log.txt logged there."""
    found = re.findall(r"step: (\d+),.*valid acc: (\S+),", train_log_path(run).read_text())
    return {int(step): float(acc) for step, acc in found}


def test_eval_cli_with_as_norm(trained_run):
    before = read_results(trained_run, "best")
    proc = run(["eval.py", "hparams/xvector_tiny_few.yaml", f"--output_folder={trained_run}",
                "--device=cpu", "--test_sets", "original,hard", "--post_process_scores=true"])
    assert "original: EER" in proc.stdout and "AS-norm EER" in proc.stdout
    res = read_results(trained_run, "best")
    assert set(res["test_sets"]) == {"original", "hard"}
    assert (eval_folder(trained_run, "best") / COHORT).is_file()
    for name in ("original", "hard"):
        entry = res["test_sets"][name]
        # Same checkpoint, deterministic embeddings: the same raw-cosine figures as after training.
        assert entry["eer"] == pytest.approx(before["test_sets"][name]["eer"])
        assert entry["as_norm"]["cohort_size"] == 8  # tiny_few of the small corpus: 4 m + 4 f
        # AS-norm with 8 cohort speakers may help or hurt: -2.8 to +9.6 points against the
        # raw EER on O and H in 5 seeds (two-sided at the recipe's seed, one-sided, the
        # default now, at 1, 2, 3 and 7). Asserted: it does not wreck the
        # scores (a swapped side or sign moves the EER towards or past 50 %).
        assert abs(entry["as_norm"]["eer"] - entry["eer"]) < 0.25, entry


def test_verifier_scores_as_the_evaluation_did(trained_run, synthetic_corpus):
    from lowres.scoring.speaker_verifier import SpeakerVerifier

    v = SpeakerVerifier.from_run(trained_run)
    assert v.threshold is not None
    wav = synthetic_corpus / "voxceleb1" / "wav"
    scores = read_scores(eval_folder(trained_run, "best") / scores_name("original"))
    picked = pd_sample(scores[scores.label == 1], 8), pd_sample(scores[scores.label == 0], 8)
    best = scores.set_index(["path1", "path2"]).score
    # Not asserted: that these target pairs outscore the non-target ones (by 0.12-0.54 in
    # mean cosine in 5 seeds; what the run learnt is test_training_ends_with_...'s).
    for rows in picked:
        got = [v.score(wav / r.path1, wav / r.path2) for r in rows.itertuples()]
        # SpeakerVerifier embeds exactly as the evaluation did (best checkpoint).
        np.testing.assert_allclose(got, [best[(r.path1, r.path2)] for r in rows.itertuples()],
                                   atol=1e-4)

    target = picked[0].iloc[0]
    proc = subprocess.run([sys.executable, "-m", "lowres.verify", str(trained_run),
                           str(wav / target.path1), str(wav / target.path2)],
                          cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    score = float(lines[0].split()[1])
    threshold = v.decision_threshold()  # calibrated on the run's validation trials
    assert lines[2] == f"threshold {threshold.score:.4f} ({threshold.rule})"
    assert lines[3] == f"{'same' if score >= threshold.score else 'different'} speaker"


def pd_sample(frame, n):
    return frame.sample(n=min(n, len(frame)), random_state=0)
