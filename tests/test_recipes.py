"""The recipe registry recipes/VoxCeleb/recipes.csv (as SpeechBrain's tests/recipes/*.csv):
every hparams file is in it, and its debug commands (SpeechBrain's ``--debug``) run."""

import csv
import os
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

from lowres.io.run_folder import eval_folder, read_results

RECIPE = ROOT / "recipes" / "VoxCeleb"
ROWS = list(csv.DictReader((RECIPE / "recipes.csv").open(encoding="utf-8")))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_every_hparams_file_is_registered():
    cells = {f"hparams/{p.name}" for p in (RECIPE / "hparams").glob("*.yaml")}
    trained = [r["Hparam_file"] for r in ROWS if r["Script_file"] == "train.py"]
    assert sorted(trained) == sorted(cells)  # each once
    for row in ROWS:
        for column in ("Script_file", "Hparam_file", "Data_prep_file", "Readme_file"):
            assert (RECIPE / row[column]).is_file(), (column, row[column])
        assert "--debug" in shlex.split(row["test_debug_flags"])


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2

    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v2") / "tiny", seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted({r["Hparam_file"] for r in ROWS}))
def test_debug_commands_run(cell, synthetic_corpus, prepared_manifests, tiny_wav2vec2,
                            tmp_path):
    """Each row of the cell in registry order (train.py, then eval.py on its run)."""
    out = tmp_path / "run"
    values = {"data_folder": synthetic_corpus, "manifest_folder": prepared_manifests,
              "output_folder": out, "tiny_wav2vec2": tiny_wav2vec2}
    for row in (r for r in ROWS if r["Hparam_file"] == cell):
        flags = row["test_debug_flags"].format(**values)
        proc = subprocess.run([sys.executable, row["Script_file"], cell, *shlex.split(flags)],
                              cwd=RECIPE, capture_output=True, text=True, env=ENV, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert "debug mode: scoring only the" in proc.stdout + proc.stderr
        results = read_results(out, "debug/best")
        scored, total = results["debug"]["trials_scored"]["original"]
        assert 0 < scored == results["test_sets"]["original"]["n_trials"] <= total
        # a debug run never leaves results where a finished run's are
        assert not eval_folder(out, "best").exists()


def test_debug_scoring_is_explicit():
    import pandas as pd
    import torch

    from lowres.io.lists import ListError
    from lowres.scoring.trials import debug_trials, score_trials

    trials = pd.DataFrame({"label": [1, 1, 1, 0, 0, 0], "id1": list("aaabbc"),
                           "id2": list("bcdcde")})
    chosen = debug_trials(trials, 3)
    assert set(chosen.label) == {0, 1}  # target and non-target in turn
    assert len(set(chosen.id1) | set(chosen.id2)) <= 3
    embeddings = {u: torch.randn(4) for u in "abc"}
    with pytest.raises(ListError, match="have no embedding"):  # a normal run refuses
        score_trials(embeddings, trials, "val")
    scores, labels = score_trials(embeddings, trials, "val", only_embedded=True)
    assert list(labels) == [1, 1, 0] and scores.shape == (3,)
