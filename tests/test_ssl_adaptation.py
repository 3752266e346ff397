"""How the SSL backbone adapts (lowres.models.ssl_adaptation, yaml ssl_adaptation): frozen,
LoRA and bottleneck adapters on every family, their merge for export, their refusals, the
backbone's own learning rate (ssl_adaptation_lr) and the parameter counts of a run
(parameters.json), through train.py too.

Tiny random checkpoints of lowres.models.tiny_wav2vec2: no network."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from lowres.io.hparams import HparamsError, plain_values
from lowres.io.run_folder import parameters_path, read_parameters, save_folder
from lowres.models.freeze import apply_freeze_schedule
from lowres.models.ssl_adaptation import merge_adaptation
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2
from lowres.models.wav2vec2 import Wav2vec2Embedder
from lowres.training.schedules import SCHEDULES, build_lr_scheduler
from lowres.training.speaker_brain import SpeakerBrain
from lowres.training.speaker_checks import check_hparams

torch.set_num_threads(1)

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec_audio")
#: LoRA targets that act on each family (WavLM's attention never calls its projections)
TARGETS = {"wavlm": ["intermediate_dense", "output_dense"]}
ROOT = Path(__file__).resolve().parents[1]
HPARAMS = ROOT / "hparams" / "wav2vec2_tiny_few.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    return {family: save_tiny_wav2vec2(root / family, family=family, seed=3)
            for family in FAMILIES}


def _wavs(batch=4, samples=16000, seed=0):
    return 0.3 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def _embedder(folder, adaptation, **kwargs):
    torch.manual_seed(0)
    return Wav2vec2Embedder(str(folder), regularisation="none", adaptation=adaptation,
                            **kwargs)


def _train(emb, steps, schedule=(False, None), head=None):
    """``steps`` Adam steps of embedder + a linear head on 4 speakers (every parameter in
    the optimiser, as SpeechBrain's Brain), under the freeze schedule ``schedule``."""
    head = head or torch.nn.Linear(emb.embedding_dim, 4)
    opt = torch.optim.Adam([*emb.parameters(), *head.parameters()], lr=1e-2)
    emb.train()
    for step in range(steps):
        apply_freeze_schedule(emb, step, *schedule)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(emb(_wavs())), torch.arange(4)).backward()
        opt.step()
    return head


def _split(emb):
    """(the backbone's weights that cannot train, those that can), by name, as copies."""
    frozen = {n: p.detach().clone() for n, p in emb.wav2vec2.named_parameters()
              if not p.requires_grad}
    added = {n: p.detach().clone() for n, p in emb.wav2vec2.named_parameters()
             if p.requires_grad}
    return frozen, added


# -- lora / adapter: the backbone's own weights never change, the added ones train ----------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("adaptation", ["lora", "adapter"])
def test_only_the_added_weights_train(tiny, family, adaptation):
    kwargs = {"lora_target_modules": TARGETS[family]} if family in TARGETS else {}
    emb = _embedder(tiny[family], adaptation, **kwargs)
    plain = _embedder(tiny[family], "full").wav2vec2
    frozen, added = _split(emb)
    # every original weight (all of the plain backbone's) is frozen, under its name or
    # peft's (q_proj.weight -> q_proj.base_layer.weight)
    assert sum(p.numel() for p in frozen.values()) == \
        sum(p.numel() for p in plain.parameters())
    mark = "lora_" if adaptation == "lora" else "bottleneck_adapter."
    assert added and all(mark in name for name in added)
    _train(emb, 3)
    after = dict(emb.wav2vec2.named_parameters())
    for name, value in frozen.items():
        assert torch.equal(after[name], value), name
    assert all(not torch.equal(after[name], value) for name, value in added.items())


def test_the_freeze_schedule_holds_the_added_weights_until_it_unfreezes(tiny):
    """Frozen steps: the whole backbone, LoRA included, gets no gradient; then LoRA trains
    (and the backbone runs with autograd, in train mode)."""
    emb = _embedder(tiny["wav2vec2"], "lora")
    _, added = _split(emb)
    _train(emb, 2, schedule=(True, 2))
    assert all(p.grad is None for p in emb.wav2vec2.parameters())
    assert all(torch.equal(emb.wav2vec2.get_parameter(n), v) for n, v in added.items())
    _train(emb, 3, schedule=(True, 0))
    assert emb.wav2vec2.training and not emb.backbone_frozen
    assert all(not torch.equal(emb.wav2vec2.get_parameter(n), v) for n, v in added.items())


def test_frozen_backbone_never_changes_and_stays_in_eval_mode(tiny):
    emb = _embedder(tiny["wav2vec2"], "frozen", pooling="weighted_sum")
    before = {n: p.detach().clone() for n, p in emb.wav2vec2.named_parameters()}
    layer_weights = emb.layer_weights.detach().clone()
    assert not any(p.requires_grad for p in emb.wav2vec2.parameters())
    head = torch.nn.Linear(emb.embedding_dim, 4)
    head0 = head.weight.detach().clone()
    _train(emb, 3, schedule=(True, 1), head=head)  # the schedule would unfreeze at step 1
    assert emb.backbone_frozen and not emb.wav2vec2.training and emb.training
    assert apply_freeze_schedule(emb, 5, False, None, train_mode=True)  # still frozen
    assert not emb.wav2vec2.training
    for name, p in emb.wav2vec2.named_parameters():
        assert torch.equal(p, before[name]), name
    assert not torch.equal(emb.layer_weights, layer_weights)  # what follows it trains
    assert not torch.equal(head.weight, head0)


# -- export: LoRA folds into the weights, adapters cannot --------------------------------------
@pytest.mark.parametrize("family", ["wav2vec2", "wavlm"])
def test_merged_lora_embeds_as_the_adapted_model(tiny, family):
    kwargs = {"lora_target_modules": TARGETS[family]} if family in TARGETS else {}
    emb = _embedder(tiny[family], "lora", lora_alpha=8, **kwargs)
    with torch.no_grad():
        for name, p in emb.wav2vec2.named_parameters():
            if "lora_B" in name:  # trained LoRA: a non-zero update
                p.normal_(0, 0.2)
    emb.eval()
    plain = _embedder(tiny[family], "full").eval()
    with torch.no_grad():
        adapted = emb(_wavs())
        assert (adapted - plain(_wavs())).abs().max() > 1e-3  # LoRA does act
        merged = merge_adaptation(emb)
        assert type(merged) is type(plain.wav2vec2)
        assert set(merged.state_dict()) == set(plain.wav2vec2.state_dict())
        assert not any(hasattr(m, "lora_A") for m in merged.modules())
        emb.wav2vec2, lora = merged, emb.wav2vec2
        torch.testing.assert_close(emb(_wavs()), adapted, rtol=0, atol=1e-5)
    assert any(hasattr(m, "lora_A") for m in lora.modules())  # the embedder's own: untouched


def test_adapters_cannot_be_merged(tiny):
    with pytest.raises(ValueError, match="cannot be folded"):
        merge_adaptation(_embedder(tiny["wav2vec2"], "adapter"))


def test_a_checkpoint_of_a_lora_embedder_restores_it(tiny, tmp_path):
    emb = _embedder(tiny["hubert"], "lora")
    _train(emb, 2)
    emb.eval()
    with torch.no_grad():
        ref = emb(_wavs())
    Checkpointer(tmp_path, recoverables={"embedder": emb}).save_checkpoint()
    torch.manual_seed(5)  # other LoRA initial weights
    fresh = Wav2vec2Embedder(str(tiny["hubert"]), regularisation="none", adaptation="lora")
    Checkpointer(tmp_path, recoverables={"embedder": fresh}).recover_if_possible()
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(_wavs()), ref, rtol=0, atol=0)


# -- refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"adaptation": "prefix"}, "ssl_adaptation='prefix': must be one of full, frozen, lora, "
                               "adapter"),
    ({"adaptation": "lora", "lora_rank": 0}, "lora_rank=0: must be a positive integer"),
    ({"adaptation": "lora", "lora_rank": -4}, "lora_rank=-4"),
    ({"adaptation": "lora", "lora_dropout": 1.0}, r"lora_dropout=1.0: must be in \[0, 1\)"),
    ({"adaptation": "lora", "lora_target_modules": ["q_proj", "query"]},
     "lora_target_modules=.*query is no linear map of the hubert backbone's transformer "
     "layers; valid: intermediate_dense, k_proj, out_proj, output_dense, q_proj, v_proj"),
    ({"adaptation": "adapter", "adapter_bottleneck": 0},
     "adapter_bottleneck=0: must be a positive integer"),
])
def test_bad_values_are_refused_naming_key_and_value(tiny, kwargs, match):
    with pytest.raises(HparamsError, match=match):
        Wav2vec2Embedder(str(tiny["hubert"]), **kwargs)


def test_lora_on_wavlm_attention_is_refused_naming_family_and_key(tiny):
    with pytest.raises(HparamsError, match=r"lora_target_modules=\['q_proj', 'v_proj'\]: a "
                       r"wavlm backbone's attention reads the weights of q_proj, k_proj, "
                       r"v_proj, out_proj directly.*valid for this backbone: "
                       r"gru_rel_pos_linear, intermediate_dense, output_dense"):
        Wav2vec2Embedder(str(tiny["wavlm"]), adaptation="lora")


@pytest.mark.parametrize("overrides, key", [
    ({"ssl_adaptation": "prefix"}, "ssl_adaptation"),
    ({"ssl_adaptation": "lora", "lora_rank": 0}, "lora_rank"),
    ({"ssl_adaptation": "lora", "lora_target_modules": "q_proj"}, "lora_target_modules"),
    ({"ssl_adaptation": "adapter", "adapter_bottleneck": -1}, "adapter_bottleneck"),
    ({"ssl_adaptation_lr": 0}, "ssl_adaptation_lr"),
    ({"ssl_adaptation": "frozen", "ssl_adaptation_lr": 1e-4}, "ssl_adaptation_lr"),
])
def test_train_py_refuses_them_before_building(overrides, key):
    values = plain_values(HPARAMS, {"data_folder": "/x", **overrides})
    with pytest.raises(HparamsError, match=f"invalid hparam {key}="):
        check_hparams(values, world_size=1)


def test_train_py_accepts_the_yaml_defaults_of_each_mode():
    for adaptation in ("full", "frozen", "lora", "adapter"):
        check_hparams(plain_values(HPARAMS, {"data_folder": "/x",
                                             "ssl_adaptation": adaptation}), world_size=1)


# -- two learning rates -----------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULES)
def test_the_schedule_scales_both_groups_alike(name):
    lr, ratio = 1e-3, 0.05
    opt = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                            {"params": [torch.nn.Parameter(torch.zeros(2))]}], lr=0.5)
    sched = build_lr_scheduler(opt, name, lr, 80, one_cycle_half_steps=7, lr_scales=[1, ratio])
    single = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.5)
    reference = build_lr_scheduler(single, name, lr, 80, one_cycle_half_steps=7)
    for _ in range(60):
        main, backbone = (group["lr"] for group in opt.param_groups)
        assert main == pytest.approx(single.param_groups[0]["lr"], rel=1e-12)
        assert backbone == pytest.approx(ratio * main, rel=1e-9)
        for o, s in ((opt, sched), (single, reference)):
            o.step()
            s.step()


def test_two_groups_resume_exactly(tmp_path):
    def build():
        opt = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                                {"params": [torch.nn.Parameter(torch.zeros(2))]}])
        return opt, build_lr_scheduler(opt, "cyclic", 1e-3, 80, lr_scales=[1, 10])

    def lrs(opt, sched, steps):
        out = []
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append([g["lr"] for g in opt.param_groups])
        return out

    full = lrs(*build(), 40)
    opt, sched = build()
    lrs(opt, sched, 17)
    Checkpointer(tmp_path, recoverables={"opt": opt, "sched": sched}).save_checkpoint()
    opt, sched = build()
    Checkpointer(tmp_path, recoverables={"opt": opt, "sched": sched}).recover_if_possible()
    assert lrs(opt, sched, 23) == full[17:]


def _brain(emb, tmp_path, **hparams):
    """train.py's SpeakerBrain around ``emb`` and a cosine-free linear classifier."""
    values = {"lr": 1e-3, "lr_schedule": "cyclic", "max_steps": 80, "base_lr": 1e-8,
              "final_lr": 5e-6, "one_cycle_half_steps": 25000, "output_folder": str(tmp_path),
              "embedder": emb, "wav2vec_initially_frozen": True, "num_frozen_steps": 10,
              "ssl_adaptation": emb.adaptation, **hparams}
    modules = {"embedder": emb, "classifier": torch.nn.Linear(emb.embedding_dim, 4)}
    return SpeakerBrain(modules=modules, opt_class=functools.partial(torch.optim.Adam, lr=0.5),
                        hparams=values, run_opts={"device": "cpu"},
                        checkpointer=Checkpointer(tmp_path / "save"))


@pytest.mark.parametrize("adaptation", ["full", "lora"])
def test_ssl_adaptation_lr_is_the_backbone_groups_lr(tiny, tmp_path, adaptation):
    emb = _embedder(tiny["wav2vec2"], adaptation)
    brain = _brain(emb, tmp_path, ssl_adaptation_lr=2e-5)
    brain.init_optimizers()
    main, backbone = brain.optimizer.param_groups
    trainable = {id(p) for p in brain.modules.parameters() if p.requires_grad}
    in_backbone = {id(p) for p in emb.wav2vec2.parameters() if p.requires_grad}
    assert {id(p) for p in backbone["params"]} == in_backbone
    assert {id(p) for p in main["params"]} == trainable - in_backbone
    assert main["params"]  # the classifier
    for _ in range(30):
        assert backbone["lr"] == pytest.approx(main["lr"] * 2e-5 / 1e-3, rel=1e-9)
        brain.optimizer.step()
        brain.lr_scheduler.step()
    assert main["lr"] > 1e-5  # the cyclic schedule's main lr, not the backbone's


def test_without_ssl_adaptation_lr_there_is_one_group(tiny, tmp_path):
    brain = _brain(_embedder(tiny["wav2vec2"], "lora"), tmp_path, ssl_adaptation_lr=None)
    brain.init_optimizers()
    assert len(brain.optimizer.param_groups) == 1
    assert len(brain.optimizer.param_groups[0]["params"]) == len(list(brain.modules.parameters()))


# -- parameter counts ---------------------------------------------------------------------------
@pytest.mark.parametrize("adaptation, num_frozen_steps, backbone_counts", [
    ("full", 10, "transformer"),  # trains once unfrozen: counted
    ("full", None, "none"),  # never unfrozen: not counted
    ("full", 200, "none"),  # unfrozen only after max_steps
    ("frozen", 10, "none"),
    ("lora", 10, "lora"),
    ("adapter", 10, "adapter"),
])
def test_parameters_json_counts_what_trains(tiny, tmp_path, adaptation, num_frozen_steps,
                                            backbone_counts):
    emb = _embedder(tiny["wav2vec2"], adaptation)
    brain = _brain(emb, tmp_path, num_frozen_steps=num_frozen_steps)
    brain.record_parameters()
    counts = read_parameters(tmp_path)
    assert counts == json.loads(parameters_path(tmp_path).read_text())
    head = sum(p.numel() for p in brain.modules.classifier.parameters())
    backbone = emb.wav2vec2
    expected = {
        "transformer": sum(p.numel() for n, p in backbone.named_parameters()
                           if not n.startswith("feature_extractor.")),  # the CNN stays frozen
        "none": 0,
        "lora": sum(p.numel() for n, p in backbone.named_parameters() if "lora_" in n),
        "adapter": sum(p.numel() for n, p in backbone.named_parameters() if "adapter" in n),
    }[backbone_counts]
    assert counts == {"trainable": head + expected,
                      "total": head + sum(p.numel() for p in backbone.parameters()),
                      "ssl_adaptation": adaptation}
    assert counts["trainable"] < counts["total"]


def test_the_counts_are_logged(tiny, tmp_path, caplog):
    brain = _brain(_embedder(tiny["wav2vec2"], "lora"), tmp_path)
    with caplog.at_level("INFO", logger="lowres.training.speaker_brain"):
        brain.record_parameters()
    counts = read_parameters(tmp_path)
    assert (f"model (embedder + classifier): {counts['trainable']:,} of {counts['total']:,} "
            f"parameters train") in caplog.text
    assert "ssl_adaptation lora" in caplog.text


def test_non_ssl_models_record_their_counts_too(tmp_path):
    emb = torch.nn.Linear(3, 2)
    emb.weight.requires_grad_(False)
    brain = SimpleNamespace(hparams=SimpleNamespace(output_folder=tmp_path, embedder=emb),
                            modules=torch.nn.ModuleDict({"embedder": emb,
                                                         "classifier": torch.nn.Linear(2, 2)}))
    SpeakerBrain.record_parameters(brain)
    assert read_parameters(tmp_path) == {"trainable": 2 + 6, "total": 6 + 6 + 2,
                                         "ssl_adaptation": None}


@pytest.mark.slow
def test_a_lora_run_of_train_py_records_its_counts_and_trains_lora_only(
        tiny, prepared_manifests, tmp_path):
    out = tmp_path / "run"
    args = ["--manifest_folder", prepared_manifests, "--output_folder", out,
            "--wav2vec2_source", tiny["wav2vec2"], "--ssl_adaptation", "lora",
            "--ssl_adaptation_lr", "1e-2", "--lr_schedule", "constant", "--device", "cpu",
            "--precision", "fp32", "--num_workers", "0", "--batch_size", "4",
            "--crop_seconds", "1.0", "--max_steps", "2", "--num_frozen_steps", "0",
            "--val_interval", "2", "--evaluate_after_training", "false", "--noprogressbar"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "recipes/VoxCeleb/train.py", str(HPARAMS),
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    counts = read_parameters(out)
    assert counts["ssl_adaptation"] == "lora" and 0 < counts["trainable"] < counts["total"]
    assert f"{counts['trainable']:,} of {counts['total']:,} parameters train" in \
        (out / "log.txt").read_text()
    [ckpt] = [c for c in save_folder(out).glob("CKPT+*") if (c / "complete.ckpt").is_file()]
    weights = torch.load(ckpt / "embedder.ckpt")
    initial = _embedder(tiny["wav2vec2"], "full").wav2vec2.state_dict()
    for name, value in initial.items():  # peft's names for the wrapped weights
        lora_name = name.replace("q_proj.", "q_proj.base_layer.").replace(
            "v_proj.", "v_proj.base_layer.")
        assert torch.equal(weights[f"wav2vec2.{lora_name}"], value), name
    assert all(weights[k].abs().sum() > 0 for k in weights if "lora_B" in k)  # from zero
