"""lowres.io.lists, the one reader of manifests and trial lists, and scoring.trials."""

import numpy as np
import pytest
import torch

from lowres.io.lists import ListError, manifest_items, read_manifest, read_trials, write_manifest
from lowres.scoring.trials import score_trials


def test_trials_and_scores(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_text("1 a/s/1.wav a/s/2.wav\n\n0 a/s/1.wav b/t/1.wav\n")
    trials = read_trials(path)
    assert trials.label.tolist() == [1, 0]
    assert trials.id1.tolist() == ["a/s/1", "a/s/1"] and trials.id2.tolist() == ["a/s/2", "b/t/1"]
    assert trials.path2.tolist() == ["a/s/2.wav", "b/t/1.wav"]
    emb = {"a/s/1": torch.tensor([1.0, 0.0]), "a/s/2": torch.tensor([2.0, 0.1]),
           "b/t/1": torch.tensor([0.0, 3.0])}
    scores, labels = score_trials(emb, trials)
    assert labels.tolist() == [1, 0]
    assert scores[0] == pytest.approx(2 / np.hypot(2, 0.1)) and scores[1] == pytest.approx(0)
    with pytest.raises(ListError, match="b/t/1"):
        score_trials({k: v for k, v in emb.items() if k != "b/t/1"}, trials)


@pytest.mark.parametrize("text, match", [("1 a/s/1.wav\n", "line 1.*label path1 path2"),
                                         ("1 a.wav b.wav\n2 a.wav b.wav\n", "line 2"),
                                         ("\n", "empty")])
def test_malformed_trial_list_names_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ListError, match=match) as err:
        read_trials(path)
    assert str(path) in str(err.value)


def test_manifest_round_trip_and_errors(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"ID": ["b/s/2", "a/s/1"], "duration": [2.5, 1.0],
                       "wav": ["/x/b.wav", "/x/a.wav"], "spk_id": ["b", "a"],
                       "session": ["s", "s"], "gender": ["m", "f"]})
    path = tmp_path / "train.csv"
    write_manifest(path, df)
    back = read_manifest(path)
    assert back.ID.tolist() == ["a/s/1", "b/s/2"]  # written sorted by ID
    assert back.duration.tolist() == [1.0, 2.5]
    assert manifest_items(back)["b/s/2"]["wav"] == "/x/b.wav"
    with pytest.raises(ListError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    path.write_text("ID,wav\na,/x/a.wav\n")
    with pytest.raises(ListError, match=r"lacks columns \['duration'\]"):
        read_manifest(path)
    path.write_text("ID,duration,wav\na,1.0,/x/a.wav\na,2.0,/x/a2.wav\n")
    with pytest.raises(ListError, match="'a' more than once"):
        manifest_items(read_manifest(path))
