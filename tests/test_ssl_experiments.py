"""The SSL-ECAPA family (hparams/shared/ssl_ecapa.yaml) and experiments beyond the study's
cells (hparams/wavlm_base_plus_tiny_few.yaml, hubert_base_tiny_few.yaml) in the LR grids
through lowres.study.grids.runs without code per file. Tiny random checkpoints: no network."""

import os
import subprocess
import sys

import pytest
import ruamel.yaml
import torch
from conftest import ROOT
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from transformers import HubertModel, WavLMModel

from lowres.io.hparams import load_hparams, plain_values
from lowres.io.run_folder import save_folder, train_log_path
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2
from lowres.study.grids import runner
from lowres.study.grids.definitions import NAIVE_LRS, format_value
from lowres.study.grids.runs import expand, expand_experiments

torch.set_num_threads(1)
HPARAMS = ROOT / "hparams"
SUBSETS = ("full", "tiny_few", "tiny_many_low", "tiny_many_high")
NEW_FILES = {"wavlm_base_plus_tiny_few": ("wavlm", "microsoft/wavlm-base-plus", WavLMModel),
             "hubert_base_tiny_few": ("hubert", "facebook/hubert-base-ls960", HubertModel)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    return {family: save_tiny_wav2vec2(root / family, family=family, seed=2)
            for family in ("wav2vec2", "wavlm", "hubert")}


@pytest.mark.parametrize("subset", SUBSETS)
def test_ssl_ecapa_builds_from_its_hparams(tiny, subset):
    h = load_hparams(HPARAMS / f"ssl_ecapa_{subset}.yaml",
                     {"wav2vec2_source": str(tiny["wav2vec2"]), "n_speakers": 7})
    assert (h["model_name"], h["subset"], h["lr"]) == ("ssl_ecapa", subset, 1.0e-4)
    emb = h["embedder"]
    assert isinstance(emb.backend, ECAPA_TDNN) and h["embedding_dim"] == 192
    assert emb.backend.blocks[0].conv.conv.in_channels == 128  # the backbone's hidden size
    assert emb.layer_weights.shape == (3,)  # CNN projection + 2 layers, weighted
    assert emb.dropout.p == 0.0  # ECAPA's embedding goes to the classifier as is
    with torch.no_grad():
        out = emb.eval()(0.3 * torch.randn(2, 16000), torch.tensor([1.0, 0.8]))
    assert out.shape == (2, 192) and h["classifier"](out.unsqueeze(1)).shape == (2, 1, 7)


@pytest.mark.parametrize("name", list(NEW_FILES))
def test_new_experiment_files_hold_only_what_differs(tiny, name):
    family, source, model_class = NEW_FILES[name]
    own = ruamel.yaml.YAML(typ="safe", pure=True).load((HPARAMS / f"{name}.yaml").read_text())
    assert own["extends"] == ["shared/base.yaml", "shared/wav2vec2.yaml"]
    assert set(own) == {"extends", "wav2vec2_source", "ssl_pooling", "subset", "n_speakers",
                        "val_interval", "lr"}
    values = plain_values(HPARAMS / f"{name}.yaml")
    assert (values["wav2vec2_source"], values["ssl_pooling"]) == (source, "weighted_sum")
    assert (values["model_name"], values["subset"]) == ("wav2vec2", "tiny_few")
    h = load_hparams(HPARAMS / f"{name}.yaml", {"wav2vec2_source": str(tiny[family])})
    assert type(h["embedder"].wav2vec2) is model_class


def test_experiments_expand_in_the_lr_grids(capsys):
    names = [*NEW_FILES, "ssl_ecapa_tiny_few"]
    runs = expand_experiments(names, "naive_lr", "runs")
    study = expand("naive_lr", "runs", models=["wav2vec2"], subsets=["tiny_few"])
    assert len(runs) == 3 * len(NAIVE_LRS)
    for k, run in enumerate(runs):
        name, ref = names[k // len(NAIVE_LRS)], study[k % len(NAIVE_LRS)]
        assert run.hparams_file == f"hparams/{name}.yaml"
        assert run.overrides == ref.overrides and run.model == "wav2vec2"
        lr = format_value(run.overrides["lr"])
        assert str(run.output_folder) == f"runs/naive_lr/{name}/lr{lr}"
    assert [r.overrides["lr"] for r in runs[:len(NAIVE_LRS)]] == list(NAIVE_LRS)
    # ssl_ecapa takes wav2vec2's step scaling: its freeze shrinks with the run
    scaled = expand_experiments(["ssl_ecapa_tiny_few"], "detailed_lr", "runs", step_scale=0.001)
    assert {(r.overrides["max_steps"], r.overrides["num_frozen_steps"]) for r in scaled} == \
        {(50, 12)}
    assert not expand_experiments(["ssl_ecapa_tiny_few"], "naive_lr", models=["xvector"])
    runner.main(["list", "naive_lr", "--experiment", "wavlm_base_plus_tiny_few"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{sys.executable} recipes/VoxCeleb/train.py hparams/"
                             "wavlm_base_plus_tiny_few.yaml ")
    assert out[-1].startswith(f"# {len(NAIVE_LRS)} runs")
    with pytest.raises(ValueError, match="LR grids.*not in steps"):
        expand_experiments(names, "steps")
    with pytest.raises(ValueError, match="no hparams file"):
        expand_experiments(["wavlm_large_tiny_few"], "naive_lr")


@pytest.mark.slow
@pytest.mark.parametrize("name,family,extra", [
    ("ssl_ecapa_tiny_few", "wav2vec2", []),
    ("wavlm_base_plus_tiny_few", "wavlm", []),
    # MHFA (tests/test_mhfa.py) with small sizes: trains frozen, then unfrozen
    ("wav2vec2_tiny_few", "wav2vec2", ["--ssl_pooling", "mhfa", "--mhfa_heads", "4",
                                       "--mhfa_compression_dim", "16"]),
], ids=["ssl_ecapa", "wavlm", "wav2vec2_mhfa"])
def test_trains_two_steps_with_a_tiny_checkpoint_of_its_family(
        name, family, extra, tiny, synthetic_corpus, prepared_manifests, tmp_path):
    out = tmp_path / "run"
    args = ["--data_folder", synthetic_corpus, "--manifest_folder", prepared_manifests,
            "--output_folder", out, "--wav2vec2_source", tiny[family], "--device", "cpu",
            "--precision", "fp32", "--num_workers", "0", "--batch_size", "4",
            "--crop_seconds", "1.0", "--max_steps", "2", "--num_frozen_steps", "1",
            "--val_interval", "2", "--evaluate_after_training", "false", "--noprogressbar",
            *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "recipes/VoxCeleb/train.py", f"hparams/{name}.yaml",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "step: 2, " in train_log_path(out).read_text()  # 2 steps, then validated
    assert list(save_folder(out).glob("CKPT+*"))


@pytest.mark.parametrize("key, value", [("ssl_pooling", "max"), ("ssl_model_type", "whisper")])
def test_train_py_refuses_bad_ssl_keys_before_building(key, value):
    from lowres.io.hparams import HparamsError
    from lowres.training.speaker_checks import check_hparams

    values = plain_values(HPARAMS / "wav2vec2_tiny_few.yaml", {key: value})
    with pytest.raises(HparamsError, match=f"{key}={value!r}"):
        check_hparams(values, world_size=1)
