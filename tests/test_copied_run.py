"""lowres's commands on a copied run folder, called from another directory, write their
outputs and nothing else: a run's hyperparams.yaml names the output_folder train.py was
given (often relative, ``runs/demo/...``), which is not where the copy is."""

import itertools
import shutil

import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import ROOT, load_script
from test_export import SPEAKERS, make_run, tone

from lowres.embed import main as embed_main
from lowres.export.__main__ import main as export_main
from lowres.io import lists
from lowres.io.hparams import plain_values
from lowres.io.run_folder import EVAL, hyperparams_path, results_path
from lowres.scoring.checkpoints import EvaluationError
from lowres.verify import main as verify_main

torch.set_num_threads(1)

RECIPE = ROOT / "recipes" / "VoxCeleb"
RECORDED = "runs/demo/xvector_tiny_few/lr0.01_steps40_seed1"  # as train.py was given it


def tree(folder):
    return {p.relative_to(folder) for p in folder.rglob("*")}


def write_eval_lists(manifests, corpus):
    """Two recordings per speaker as the validation set and VoxCeleb1-O, with every trial."""
    rows = []
    for (i, spk), u in itertools.product(enumerate(SPEAKERS), range(2)):
        path = corpus / f"{spk}_{u}.wav"
        sf.write(path, tone(120 + 40 * i, 1.0, 10 * i + u), 16000)
        rows.append({"ID": path.stem, "duration": 1.0, "wav": str(path), "spk_id": spk,
                     "session": f"s{u}", "gender": "m"})
    trials = pd.DataFrame([{"label": int(x["spk_id"] == y["spk_id"]), "path1": f"{x['ID']}.wav",
                            "path2": f"{y['ID']}.wav"} for x, y in itertools.combinations(rows, 2)])
    val = manifests / "tiny_few"
    for csv, txt in (lists.test_set_files(manifests, "original"),
                     (val / "val.csv", val / "val_trials.txt")):
        csv.parent.mkdir(parents=True, exist_ok=True)
        lists.write_manifest(csv, pd.DataFrame(rows))
        lists.write_trials(txt, trials)
    return [r["wav"] for r in rows]


@pytest.fixture
def copied_run(tmp_path):
    """(a copy of a finished run whose yaml names RECORDED, wavs, an empty working dir)."""
    made = make_run(tmp_path / "made", "xvector")
    wavs = write_eval_lists(tmp_path / "made" / "manifests", tmp_path / "made" / "corpus" / "wav")
    copy = tmp_path / "copy"
    shutil.copytree(made, copy)
    yaml = hyperparams_path(copy)
    yaml.write_text(yaml.read_text().replace(str(made), RECORDED))
    assert plain_values(yaml)["output_folder"] == RECORDED
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return copy, wavs, cwd


def test_commands_on_a_copied_run_write_only_their_outputs(copied_run, tmp_path, monkeypatch):
    copy, wavs, cwd = copied_run
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    wav_list = tmp_path / "wavs.txt"
    wav_list.write_text("\n".join(wavs) + "\n")
    run_files = tree(copy)

    assert verify_main([str(copy), wavs[0], wavs[2]]) == 0
    assert embed_main([str(copy), "--wav_list", str(wav_list), "--out", str(out / "emb.npz"),
                       "--noprogressbar"]) == 0
    assert export_main([str(copy), "--out", str(out / "sb")]) == 0
    assert tree(cwd) == set() and tree(copy) == run_files

    before = results_path(copy).stat().st_mtime_ns
    evaluate = load_script(RECIPE / "eval.py", "eval_recipe").main
    evaluate([str(RECIPE / "hparams" / "xvector_tiny_few.yaml"), f"--output_folder={copy}",
              "--device=cpu", "--test_sets=original", "--num_workers=0", "--noprogressbar"])
    assert tree(cwd) == set()
    assert {p for p in tree(copy) - run_files if p.parts[0] != EVAL} == set()
    assert results_path(copy).stat().st_mtime_ns != before  # the evaluation wrote its results


def test_eval_refuses_a_missing_run_before_creating_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evaluate = load_script(RECIPE / "eval.py", "eval_recipe").main
    with pytest.raises(EvaluationError, match="no run to evaluate"):
        evaluate([str(RECIPE / "hparams" / "xvector_tiny_few.yaml"), "--output_folder=nope",
                  "--device=cpu", "--data_folder=data"])
    assert tree(tmp_path) == set()
