"""The 14 hparams files build their models; overrides reach them; bad values fail clearly."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_script

from lowres.io.hparams import HparamsError, load_hparams, overrides_dict, plain_values
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2
from lowres.training.manifests import check_test_sets
from lowres.training.speaker_brain import Diverged, RunningStats, SpeakerBrain
from lowres.training.speaker_checks import check_hparams
from lowres.training.speaker_loaders import training_schedule

ROOT = Path(__file__).resolve().parents[1]
HPARAMS = ROOT / "hparams"
TRAIN = ROOT / "recipes" / "VoxCeleb" / "train.py"
CELLS = [f"{m}_{s}" for m in ("xvector", "ecapa", "wav2vec2")
         for s in ("full", "tiny_few", "tiny_many_low", "tiny_many_high")]
FILES = CELLS + ["ablation_wav2vec2_tiny_few", "ablation_wav2vec2_tiny_many_high"]
# Best lr per cell, docs/study.md, 'Published results'.
BEST_LR = {
    "xvector_full": 3.16e-3, "xvector_tiny_few": 1.78e-2, "xvector_tiny_many_low": 1e-4,
    "xvector_tiny_many_high": 1.78e-3, "ecapa_full": 5.62e-3, "ecapa_tiny_few": 1.78e-2,
    "ecapa_tiny_many_low": 5.62e-3, "ecapa_tiny_many_high": 5.62e-3,
    "wav2vec2_full": 1.78e-4, "wav2vec2_tiny_few": 5.62e-6, "wav2vec2_tiny_many_low": 1.78e-4,
    "wav2vec2_tiny_many_high": 1.78e-4, "ablation_wav2vec2_tiny_few": 5.62e-6,
    "ablation_wav2vec2_tiny_many_high": 1.78e-4,
}
GRID_KEYS = ["lr", "max_steps", "seed", "batch_size", "lr_schedule", "data_folder",
             "manifest_folder", "output_folder", "crop_seconds", "val_interval", "precision",
             "enroll_training_data", "post_process_scores", "val_schedule", "test_sets",
             "test_precision"]
W2V2_KEYS = ["regularisation", "reset_weights", "completely_freeze_feature_extractor",
             "wav2vec_initially_frozen", "num_frozen_steps", "wav2vec2_source",
             "regularisation_as_published", "reset_weights_as_published",
             "frozen_backbone_as_published", "input_normalisation"]


@pytest.fixture(scope="module")
def tiny_w2v2(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v2") / "tiny", size="tiny", seed=0)


def build(name, tiny_w2v2, **overrides):
    base = {"data_folder": "/nonexistent", "n_speakers": 7}
    if "wav2vec2" in name:
        base["wav2vec2_source"] = str(tiny_w2v2)
    return load_hparams(HPARAMS / f"{name}.yaml", {**base, **overrides})


@pytest.mark.parametrize("name", FILES)
def test_every_file_builds_its_model(name, tiny_w2v2):
    torch.set_num_threads(1)
    h = build(name, tiny_w2v2)
    values = plain_values(HPARAMS / f"{name}.yaml", {"data_folder": "/x"})
    for key in GRID_KEYS + (W2V2_KEYS if "wav2vec2" in name else []):
        assert key in values, f"{name}: grid key {key} is not a plain top-level key"
    assert h["lr"] == pytest.approx(BEST_LR[name])
    assert (h["max_steps"], h["batch_size"], h["crop_seconds"]) == (50000, 100, 2.0)
    assert (h["precision"], h["lr_schedule"]) == ("fp16", "cyclic")
    subset = name.split("_", 1)[1].replace("wav2vec2_", "")
    assert h["subset"] == subset
    assert h["val_interval"] == (3125 if subset == "full" else "epoch")
    # what the published runs did (docs/study.md, 'What the published runs did'): validations
    # counted within each pass, the original's default seed, tests on O, E and H under fp16
    # (on a GPU), the utterance normalised before cropping
    assert (h["val_schedule"], h["seed"], h["test_precision"]) == ("pass", 42133724, "fp16")
    assert h["test_sets"] == ["original", "extended", "hard"]
    assert h.get("input_normalisation") == ("utterance" if "wav2vec2" in name else None)
    assert h["n_speakers"] == 7
    embedder, classifier = h["embedder"].eval(), h["classifier"]
    with torch.no_grad():
        emb = embedder(torch.randn(2, 8000), torch.tensor([1.0, 0.75]))
    assert emb.shape == (2, h["embedding_dim"])
    assert classifier(emb.unsqueeze(1)).shape == (2, 1, 7)
    loss = h["loss"](classifier(emb.unsqueeze(1)), torch.tensor([[0], [3]]))
    assert torch.isfinite(loss)
    assert h["loss"].loss_fn.margin == 0.2 and h["loss"].loss_fn.scale == 30
    assert set(h["checkpointer"].recoverables) >= {"embedder", "classifier", "counter"}


def test_model_sizes_follow_the_study(tiny_w2v2):
    x = build("xvector_tiny_few", tiny_w2v2)
    e = build("ecapa_tiny_few", tiny_w2v2)
    assert x["embedding_dim"] == 512 and e["embedding_dim"] == 192
    assert e["embedder"].backbone.blocks[0].conv.conv.out_channels == 512  # C=512
    assert build("ecapa_tiny_few", tiny_w2v2, ecapa_channels=1024)[
        "embedder"].backbone.blocks[0].conv.conv.out_channels == 1024


def test_lr_override_reaches_the_optimiser(tiny_w2v2):
    h = build("ecapa_tiny_few", tiny_w2v2, lr=0.0123)
    opt = h["opt_class"](h["embedder"].parameters())
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0123)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) or list(opt.param_groups[0]["betas"]) \
        == [0.9, 0.999]
    assert opt.param_groups[0]["weight_decay"] == 0


def test_regularisation_override_reaches_wav2vec2(tiny_w2v2):
    emb = build("wav2vec2_tiny_few", tiny_w2v2)["embedder"]
    cfg = emb.wav2vec2.config
    assert (cfg.layerdrop, cfg.hidden_dropout, cfg.mask_feature_prob) == (0.1, 0.1, 0.1)
    assert cfg.mask_time_prob == 0.05  # as published: the checkpoint's, whatever the preset
    assert emb.dropout.p == 0.05  # the head: the preset's final_dropout
    emb = build("wav2vec2_tiny_few", tiny_w2v2, regularisation="none",
                regularisation_as_published=False)["embedder"]
    cfg = emb.wav2vec2.config
    assert (cfg.layerdrop, cfg.hidden_dropout, cfg.mask_time_prob) == (0.0, 0.0, 0.0)
    assert emb.dropout.p == 0.0
    cfg = build("wav2vec2_tiny_few", tiny_w2v2, regularisation_as_published=False)[
        "embedder"].wav2vec2.config
    assert cfg.mask_time_prob == 0.5


def test_reset_weights_override(tiny_w2v2):
    from transformers import Wav2Vec2Model

    saved = Wav2Vec2Model.from_pretrained(tiny_w2v2).state_dict()
    key = "encoder.layers.0.attention.k_proj.weight"
    loaded = build("wav2vec2_tiny_few", tiny_w2v2)["embedder"].wav2vec2.state_dict()
    assert torch.equal(loaded[key], saved[key])
    reset = build("wav2vec2_tiny_few", tiny_w2v2, reset_weights=True, seed=5)[
        "embedder"].wav2vec2.state_dict()
    assert not torch.equal(reset[key], saved[key])


def test_gradient_checkpointing_key_changes_memory_not_gradients(tiny_w2v2):
    """On as the study's config; off (issue 14, GPU step time) gives the same gradients.
    Attention is PyTorch's SDPA either way (transformers' default for wav2vec2)."""
    import numpy as np

    grads = []
    for on in (True, False):
        emb = build("wav2vec2_tiny_few", tiny_w2v2, gradient_checkpointing=on)["embedder"]
        assert emb.wav2vec2.is_gradient_checkpointing == on
        assert emb.wav2vec2.config._attn_implementation == "sdpa"
        emb.train()  # checkpointing acts in train mode; the same dropout and masks both ways
        torch.manual_seed(0)
        np.random.seed(0)
        emb(torch.randn(2, 8000, generator=torch.Generator().manual_seed(1)),
            torch.ones(2)).pow(2).sum().backward()
        grads.append({k: p.grad.clone() for k, p in emb.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], rtol=1e-4, atol=1e-6)


def test_unknown_key_is_an_error(tiny_w2v2):
    with pytest.raises(HparamsError, match="learning_rate"):
        build("xvector_tiny_few", tiny_w2v2, learning_rate=0.1)


# ---- train.py's checks (in process: fast) ---------------------------------------------


def train_module():
    return load_script(TRAIN, "lowres_train")


@pytest.mark.parametrize("args, message", [
    (["--lr=-0.001"], "lr=-0.001"),
    (["--lr=0"], "lr=0"),
    (["--lr_schedule=triangular"], "lr_schedule='triangular'"),
    (["--max_steps=0"], "max_steps=0"),
    (["--val_interval=often"], "val_interval='often'"),
    (["--crop_seconds=-1"], "crop_seconds=-1"),
    (["--batch_size=10.5"], "batch_size=10.5"),
    (["--val_schedule=often"], "val_schedule='often'"),
    (["--test_sets=origin"], "test_sets='origin'"),
    (["--test_sets=[original, hardest]"], "test_sets=['original', 'hardest']"),
    (["--test_precision=fp8"], "test_precision='fp8'"),
    (["--valid_precision=fp16"], "valid_precision='fp16'"),
    (["--prepare_options={val_trials: 3}"], "unknown prepare.voxceleb option(s) val_trials"),
    (["--post_process_scores=maybe"], "post_process_scores='maybe'"),
    (["--as_norm_variant=one_sided_top_k"], "as_norm_variant='one_sided_top_k'"),
])
def test_bad_values_name_key_and_value(args, message, tmp_path):
    train = train_module()
    with pytest.raises(HparamsError) as err:
        train.main([str(HPARAMS / "xvector_tiny_few.yaml"), f"--output_folder={tmp_path}",
                    "--data_folder=/nonexistent", *args])
    assert message in str(err.value)


@pytest.mark.parametrize("typed", ["original", "original,hard", "[original, hard]",
                                   "original, hard", "[original,hard]"])
def test_list_keys_take_what_a_user_types(typed):
    """--test_sets original trained to the end and then died reading it letter by letter
    (a bug): every form is read the same way by train.py, eval.py and the evaluation."""
    import speechbrain as sb

    from lowres.io.lists import test_set_names

    want = ["original"] if typed == "original" else ["original", "hard"]
    _, _, overrides = sb.parse_arguments(["x.yaml", "--test_sets", typed])
    values = plain_values(HPARAMS / "xvector_tiny_few.yaml", overrides)
    check_hparams(values, world_size=1)  # accepted before training
    assert test_set_names(values["test_sets"]) == want
    evaluate = load_script(TRAIN.parent / "eval.py", "lowres_eval")
    assert evaluate.parse(["x.yaml", "--test_sets", typed])[1] == want


def test_checks_before_training_that_the_end_of_the_run_needs(tmp_path):
    values = plain_values(HPARAMS / "xvector_tiny_few.yaml",
                          {"manifest_folder": str(tmp_path), "test_sets": "original,hard"})
    (tmp_path / "test").mkdir()
    for name in ("original.csv", "original_trials.txt", "hard.csv"):
        (tmp_path / "test" / name).write_text("x\n")
    with pytest.raises(HparamsError, match="hard_trials.txt is missing"):
        check_test_sets(values)
    check_test_sets({**values, "test_sets": "original"})
    check_test_sets({**values, "evaluate_after_training": False})
    # a published-schedule run that would never validate (so have no best checkpoint)
    values.update(val_interval=8, batch_size=2, max_steps=100)
    with pytest.raises(HparamsError, match="val_interval=8.*5 batches.*val_schedule steps"):
        training_schedule(values, num_items=10)
    assert training_schedule({**values, "val_schedule": "steps"}, 10).validation_steps[
        :2] == [8, 16]


def _fake_brain(trials_file, logged, saved):
    from types import SimpleNamespace

    from lowres.io.lists import read_trials

    brain = SpeakerBrain.__new__(SpeakerBrain)
    brain.val_trials = read_trials(trials_file)
    brain.optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])
    brain.hparams = SimpleNamespace(train_logger=SimpleNamespace(
        log_stats=lambda **kw: logged.append(kw)), average_checkpoints=0)
    brain.checkpointer = SimpleNamespace(save_and_keep_only=lambda **kw: saved.append(kw))
    brain.stats = RunningStats()
    brain.debug = False  # SpeechBrain's Brain sets it from --debug
    return brain


def test_step0_and_nonfinite_validations_never_become_best(tmp_path):
    """The step-0 validation (the untrained model) is logged but no candidate for testing
    (a bug: it used to be saved with its val_eer); a NaN EER is no candidate either."""
    import speechbrain as sb

    trials = tmp_path / "trials.txt"
    trials.write_text("1 a/s/1.wav a/s/2.wav\n0 a/s/1.wav b/s/1.wav\n"
                      "1 b/s/1.wav b/s/2.wav\n0 a/s/2.wav b/s/2.wav\n")
    logged, saved = [], []
    brain = _fake_brain(trials, logged, saved)
    good = {"a/s/1": torch.tensor([1.0, 0.0]), "a/s/2": torch.tensor([0.9, 0.1]),
            "b/s/1": torch.tensor([0.0, 1.0]), "b/s/2": torch.tensor([0.1, 0.9])}
    for epoch, step, embeddings in ((0, 0, good), (1, 8, good),
                                    (2, 16, {**good, "b/s/2": torch.tensor([math.nan] * 2)})):
        brain.val_embeddings, brain.optimizer_step = embeddings, step
        brain.on_stage_end(sb.Stage.VALID, 0.0, epoch=epoch)
    assert [e["valid_stats"]["EER%"] for e in logged[:2]] == [0.0, 0.0]
    assert math.isnan(logged[2]["valid_stats"]["EER%"])
    assert [s["meta"] for s in saved] == [{"val_eer": 0.0, "step": 8}, {"step": 16}]


def test_a_loss_that_stays_nonfinite_stops_training_as_diverged():
    brain = SpeakerBrain.__new__(SpeakerBrain)
    brain.nonfinite_count, brain.nonfinite_patience = 0, 1
    brain.check_loss_isfinite(torch.tensor(math.nan))  # within patience: a warning
    with pytest.raises(Diverged, match="not finite 2 times"):
        brain.check_loss_isfinite(torch.tensor(math.inf))


def test_bad_regularisation(tiny_w2v2, tmp_path):
    train = train_module()
    with pytest.raises(HparamsError, match="regularisation='strong'"):
        train.main([str(HPARAMS / "wav2vec2_tiny_few.yaml"), f"--output_folder={tmp_path}",
                    f"--wav2vec2_source={tiny_w2v2}", "--regularisation=strong"])


def test_missing_data_is_a_clear_error_and_nonzero_exit(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TRAIN), str(HPARAMS / "ecapa_tiny_few.yaml"),
         f"--data_folder={tmp_path / 'nowhere'}", f"--output_folder={tmp_path / 'out'}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert "data_folder=" in proc.stderr and "nowhere" in proc.stderr
    assert "manifest" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_repeated_command_line_override_last_wins(tiny_w2v2):
    import speechbrain as sb

    _, _, overrides = sb.parse_arguments(["x.yaml", "--max_steps=24", "--lr", "0.5",
                                          "--max_steps=2", "--test_sets=[original, hard]"])
    h = build("xvector_tiny_few", tiny_w2v2, **overrides_dict(overrides))
    assert (h["max_steps"], h["lr"], h["test_sets"]) == (2, 0.5, ["original", "hard"])
