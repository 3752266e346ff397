"""The defaults of the reproduction-switch table (recipes/VoxCeleb/README.md): a run built
from the shipped yaml does what the published runs did, each pinned by what the run does,
not only by the value the yaml holds."""

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from conftest import CKPT, ROOT
from speechbrain.utils.checkpoints import Checkpointer
from test_train_hparams import HPARAMS
from test_wav2vec2 import _rates
from transformers import Wav2Vec2Model

from lowres.data.crops import crop_offset
from lowres.io.hparams import load_hparams, plain_values
from lowres.io.lists import read_manifest, write_manifest
from lowres.models.wav2vec2 import REGULARISATION_PRESETS
from lowres.scoring.evaluation import evaluate_after_training
from lowres.study.grids.runs import expand
from lowres.training.manifests import prepare_wav_stats
from lowres.training.runs import precision_run_opts
from lowres.training.speaker_brain import SpeakerBrain
from lowres.training.speaker_checks import check_hparams
from lowres.training.speaker_loaders import make_loaders, training_schedule

CELL = HPARAMS / "xvector_tiny_few.yaml"
README = ROOT / "recipes" / "VoxCeleb" / "README.md"
COLUMNS = ("behaviour", "published", "key", "default", "alternative", "bug")


def switch_table() -> dict[str, dict[str, str]]:
    """The reproduction-switch table of the recipe's README: behaviour -> its cells."""
    lines = README.read_text().split("the reproduction switches", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:])
    cells = [dict(zip(COLUMNS, (c.strip() for c in row.strip(" |").split(" | ")), strict=True))
             for row in rows]
    return {row["behaviour"]: row for row in cells}


def validation_dtype(argv: list[str]) -> torch.dtype:
    """The dtype a linear layer computes in during a validation of a Brain given the run
    options train.py builds from the shipped yaml and ``argv``."""
    _, run_opts, overrides = sb.parse_arguments([str(CELL), "--data_folder=/x",
                                                 "--device=cpu", *argv])
    values = plain_values(CELL, overrides)
    check_hparams(values, world_size=1)
    run_opts, _, _ = precision_run_opts(values, run_opts)
    brain = sb.core.Brain(modules={"linear": torch.nn.Linear(4, 4)}, run_opts=run_opts)
    with brain.evaluation_ctx:
        return brain.modules.linear(torch.randn(2, 4)).dtype


@pytest.mark.parametrize("argv, dtype", [
    ([], torch.bfloat16),  # as published: under the training precision's autocast
    (["--valid_precision=fp32"], torch.float32),  # SpeechBrain's default
    (["--valid_precision=fp32", "--eval_precision=bf16"], torch.bfloat16),  # command line wins
])
def test_validation_precision(argv, dtype):
    # CPU bf16 autocast stands in for a GPU's fp16 (which falls back to fp32 on CPU)
    assert validation_dtype(["--precision=bf16", *argv]) == dtype


def test_validation_precision_on_cpu_follows_the_fp16_fallback():
    assert validation_dtype([]) == torch.float32  # the yaml's fp16 is fp32 on CPU


def test_as_norm_in_the_steps_grid_as_the_table_says():
    """On (with the original's one-sided AS-norm) for the steps runs of ECAPA and wav2vec2,
    as the study's commands; off in the LR grids and for x-vector."""
    row = switch_table()["AS-norm"]
    assert "`as_norm_variant`" in row["key"] and "`post_process_scores`" in row["key"]
    assert "steps grid's ECAPA and wav2vec2 runs" in row["default"]
    assert "`one_sided_whole_cohort`" in row["default"]
    assert "`two_sided_top_k`" in row["alternative"]
    for grid in ("naive_lr", "detailed_lr", "steps"):
        for run in expand(grid, subsets=["tiny_few"]):
            values = plain_values(ROOT / run.hparams_file,
                                  {"data_folder": "/x", **run.overrides})
            on = grid == "steps" and run.model in ("ecapa", "wav2vec2")
            assert values["post_process_scores"] is values["enroll_training_data"] is on
            assert values["as_norm_variant"] == "one_sided_whole_cohort"
    assert plain_values(CELL, {"data_folder": "/x"})["post_process_scores"] is False


# ---------------------------------------------------------------- wav2vec2, from the yaml
def shipped(name: str, **overrides) -> dict:
    """The hparams a run of hparams/<name>.yaml builds (no data needed)."""
    torch.set_num_threads(1)
    return load_hparams(HPARAMS / f"{name}.yaml", {"data_folder": "/x", "n_speakers": 7,
                                                    **overrides})


@pytest.fixture(scope="module")
def w2v2(own_config):
    return shipped("wav2vec2_tiny_few", wav2vec2_source=str(own_config))


def test_regularisation_as_published(w2v2):
    """Inside the layers and the time-mask probability the checkpoint's values, the rest
    (here the default preset's) from the preset."""
    rates = _rates(w2v2["embedder"])
    for key in ("attention_dropout", "activation_dropout", "mask_time_prob"):
        assert rates[key] == CKPT[key], key
    assert rates["hidden_dropout (layers)"] == CKPT["hidden_dropout"]
    preset = REGULARISATION_PRESETS["default"]
    assert rates["feat_proj_dropout"] == preset["feat_proj_dropout"]
    assert rates["final_dropout"] == 0.05


def test_frozen_backbone_in_train_mode_after_the_first_validation(w2v2):
    emb, modes = w2v2["embedder"], []
    for interval in (1, 2, 3):  # the stretches of training between validations
        hparams = SimpleNamespace(**{**w2v2, "epoch_counter": SimpleNamespace(current=interval)})
        brain = SimpleNamespace(hparams=hparams, modules=SimpleNamespace(embedder=emb),
                                optimizer_step=1000 * interval)
        emb.train()  # Brain._fit_train, then on_fit_batch_start per batch
        SpeakerBrain.on_fit_batch_start(brain, None, True)
        assert emb.backbone_frozen  # the first 12,500 steps
        modes.append(emb.wav2vec2.training)
    assert modes == [False, True, True]


def test_reset_weights_keep_the_positional_convolution(own_config):
    emb = shipped("wav2vec2_tiny_few", wav2vec2_source=str(own_config),
                  reset_weights=True)["embedder"]
    saved = Wav2Vec2Model.from_pretrained(own_config)
    torch.testing.assert_close(emb.wav2vec2.encoder.pos_conv_embed.conv.weight,
                               saved.encoder.pos_conv_embed.conv.weight, rtol=0, atol=0)
    torch.testing.assert_close(emb.wav2vec2.masked_spec_embed, saved.masked_spec_embed)
    q_proj = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(emb.wav2vec2.get_parameter(q_proj), saved.get_parameter(q_proj))


def test_ssl_backbone_pooling_and_head(w2v2):
    """Wav2Vec2Model from the checkpoint's config (ssl_model_type auto), mean pooling of the
    last layer (no layer weights), no head but the preset's dropout (ssl_backend null)."""
    emb = w2v2["embedder"]
    assert type(emb.wav2vec2) is Wav2Vec2Model
    assert emb.pooling == "last" and not hasattr(emb, "layer_weights")
    assert emb.backend is None and emb.embedding_dim == emb.wav2vec2.config.hidden_size


def test_the_whole_ssl_backbone_fine_tunes_at_lr(w2v2):
    """ssl_adaptation full and ssl_adaptation_lr null, as the table says: every transformer
    weight trains (no LoRA, no adapter), in SpeechBrain's one optimiser group at lr."""
    assert switch_table()["how the SSL backbone adapts"]["default"].startswith("`full`")
    emb = w2v2["embedder"]
    assert emb.adaptation == "full" and w2v2["ssl_adaptation_lr"] is None
    assert all(p.requires_grad for p in emb.wav2vec2.encoder.parameters())
    assert not any("lora" in n or "adapter" in n for n, _ in emb.wav2vec2.named_parameters())
    brain = SimpleNamespace(hparams=SimpleNamespace(**w2v2),
                            modules=torch.nn.ModuleDict({"embedder": emb}))
    assert SpeakerBrain.lr_groups(brain) is None


# ---------------------------------------------------------------- data and validation
def speaker_files(folder: Path) -> Path:
    """train.csv of two speakers' 4 s files whose halves differ in level, so a 2 s crop's
    own statistics differ from its file's."""
    rng, rows = np.random.default_rng(0), []
    for i, spk in enumerate(["id0001", "id0001", "id0002", "id0002"]):
        wav = folder / f"{i}.wav"
        signal = np.concatenate([0.1 * rng.standard_normal(32000),
                                 0.5 * rng.standard_normal(32000) + 0.2])
        sf.write(wav, signal.astype(np.float32), 16000, subtype="FLOAT")
        rows.append({"ID": f"{spk}/s{i}/0000{i}", "duration": 4.0, "wav": str(wav),
                     "spk_id": spk, "session": f"s{i}", "gender": "m"})
    write_manifest(folder / "train.csv", pd.DataFrame(rows))
    write_manifest(folder / "val.csv", pd.DataFrame(rows))
    return folder / "train.csv"


def test_input_normalisation_per_utterance(w2v2, tmp_path):
    """The run's training crops are normalised with their file's statistics (not their
    own), read from the files (data_format files), and the embedder is told so."""
    csv = speaker_files(tmp_path)
    h = {**w2v2, "train_csv": str(csv), "valid_csv": str(tmp_path / "val.csv"),
         "save_folder": str(tmp_path / "save"), "num_workers": 0, "batch_size": 2}
    prepare_wav_stats(h)
    brain = SimpleNamespace(debug=False, device="cpu", checkpointer=Checkpointer(tmp_path / "c"),
                            make_dataloader=lambda dataset, *args, **kwargs: dataset)
    loader, _ = make_loaders(brain, h, training_schedule(h, 4), world_size=1)
    assert brain.input_normalised
    row = read_manifest(csv).set_index("ID").loc[loader.dataset.data_ids[0]]
    signal, _ = sf.read(row.wav, dtype="float32")
    start = crop_offset(h["seed"], 3, len(signal), 32000)  # draw 3 of file 0
    crop = torch.from_numpy(signal[start:start + 32000])
    torch.testing.assert_close(loader.dataset[(0, 3)]["sig"],
                               (crop - row.wav_mean) / row.wav_std, rtol=1e-5, atol=1e-5)


def test_val_schedule_counts_within_each_pass():
    """full: a validation every 3,125 batches counted within each pass (10,700 batches
    here), none at max_steps; steps would validate at 12,500 and at 50,000."""
    values = plain_values(HPARAMS / "wav2vec2_full.yaml", {"data_folder": "/x"})
    steps = training_schedule(values, num_items=1_070_000).validation_steps
    assert list(steps[:5]) == [3125, 6250, 9375, 13825, 16950]
    assert 12500 not in steps and 50000 not in steps


# ---------------------------------------------------------------- preparation
def test_subsets_and_validation_trials_as_published():
    """The yaml's prepare_options {} make the rule-made subsets (no study_lists), with
    tiny_many_low validating on full's trials and tiny_many_high on tiny_few's."""
    from prepare import voxceleb

    values = plain_values(CELL, {"data_folder": "/x"})
    rules = voxceleb.subset_rules({**voxceleb.DEFAULTS, **values["prepare_options"]})
    assert set(rules) == {"full", "tiny_few", "tiny_many_low", "tiny_many_high"}
    assert all(rule["rule"] == name for name, rule in rules.items())  # none from a list
    assert rules["tiny_many_low"]["trials_from"]["rule"] == "full"
    assert rules["tiny_many_high"]["trials_from"]["rule"] == "tiny_few"
    assert "trials_from" not in rules["tiny_few"]


# ---------------------------------------------------------------- testing
def test_evaluation_defaults(monkeypatch):
    """Tested: the last and the best checkpoint (no averaged one), on O, E and H, under fp16
    on a GPU; no augmentation, no parent run, the original's seed."""
    from lowres.data.augment import from_hparams
    from lowres.io.lists import test_set_names
    from lowres.scoring import evaluation
    from lowres.scoring.eval_settings import precision_on

    h = shipped("xvector_tiny_few")
    assert torch.initial_seed() == 42133724
    assert test_set_names(h["test_sets"]) == ["original", "extended", "hard"]
    assert precision_on(h["test_precision"], "cuda:0")[0] == "fp16"
    calls = []
    monkeypatch.setattr(evaluation, "evaluate_run", lambda hparams, checkpoint, **kw:
                        calls.append((checkpoint, kw["test_sets"])))
    evaluate_after_training(h, "cpu")
    assert calls == [("last", h["test_sets"]), ("best", h["test_sets"])]
    assert from_hparams(h) is None and not h["init_from_run"]


def test_augmentation_runs_in_the_loader(tmp_path):
    from lowres.data.augment import augment_config

    (tmp_path / "noise.csv").write_text("ID,duration,wav\n")
    values = plain_values(CELL, {"data_folder": "/x", "augment_noise": True,
                                 "noise_csv": str(tmp_path / "noise.csv")})
    assert augment_config(values).side == "loader"
