"""wav2vec2 embedder and freeze schedule (lowres.models.wav2vec2, .freeze), offline model writer.

Everything runs on the tiny random model written by lowres.models.tiny_wav2vec2: no network.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import CKPT, run_module
from transformers import Wav2Vec2Model

from lowres.models.freeze import apply_freeze_schedule, backbone_frozen_at
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2, wav2vec2_config
from lowres.models.wav2vec2 import REGULARISATION_PRESETS, Wav2vec2Embedder, regularisation_config
from lowres.training.speaker_brain import SpeakerBrain

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v2") / "tiny", seed=0)


def _wavs(batch=3, samples=32000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, samples, generator=g)


# -- the offline model writer ----------------------------------------------------------------
def test_cli_writes_loadable_tiny_model(tmp_path):
    run_module("lowres.tiny_wav2vec2", "--out", tmp_path / "m", "--seed", "3")
    model = Wav2Vec2Model.from_pretrained(tmp_path / "m")
    assert model.config.hidden_size == 128 and model.config.num_hidden_layers == 2
    # 20 ms frames like the real model
    assert int(torch.prod(torch.tensor(model.config.conv_stride))) == 320


def test_base_size_is_the_wav2vec2_base_architecture():
    config = wav2vec2_config("base")
    sizes = (config.num_hidden_layers, config.hidden_size, config.intermediate_size)
    assert sizes == (12, 768, 3072)
    assert config.feat_extract_norm == "group" and tuple(config.conv_dim) == (512,) * 7
    with torch.device("meta"):
        model = Wav2Vec2Model(config)
    # parameter count of facebook/wav2vec2-base loaded as Wav2Vec2Model
    assert sum(p.numel() for p in model.parameters()) == 94_371_712
    with pytest.raises(ValueError, match="huge"):
        wav2vec2_config("huge")


# -- regularisation presets (own_config, conftest.py: a checkpoint with CKPT's values) ------
HEAD_DROPOUT = {"default": 0.05, "only_dropout": 0.05, "none": 0.0, "only_masking": 0.0,
                "only_layerdrop": 0.0}  # final_dropout of the original's preset files



def _rates(emb):
    """Regularisation of the built modules, keyed by the config value each one reads."""
    model = emb.wav2vec2
    layers = model.encoder.layers
    masking = ("mask_time_prob", "mask_time_length", "mask_feature_prob", "mask_feature_length")

    def one(values):
        assert len(set(values)) == 1, values
        return values[0]

    return {
        "attention_dropout": one([layer.attention.dropout for layer in layers]),
        "activation_dropout": one([layer.feed_forward.intermediate_dropout.p
                                   for layer in layers]),
        "hidden_dropout (layers)": one([m.p for x in layers
                                        for m in (x.dropout, x.feed_forward.output_dropout)]),
        "hidden_dropout (transformer input)": model.encoder.dropout.p,
        "feat_proj_dropout": model.feature_projection.dropout.p,
        "layerdrop": model.encoder.config.layerdrop,
        **{key: getattr(model.config, key) for key in masking},
        "final_dropout": emb.dropout.p,
    }


@pytest.mark.parametrize("preset", list(REGULARISATION_PRESETS))
@pytest.mark.parametrize("as_published", [True, False])
def test_preset_values_reach_the_modules_as_in_the_published_runs(own_config, preset,
                                                                   as_published):
    emb = Wav2vec2Embedder(str(own_config), regularisation=preset,
                           regularisation_as_published=as_published)
    p = REGULARISATION_PRESETS[preset]
    assert p["final_dropout"] == HEAD_DROPOUT[preset]
    written = {
        "attention_dropout": p["attention_dropout"],
        "activation_dropout": p["activation_dropout"],
        "hidden_dropout (layers)": p["hidden_dropout"],
        "hidden_dropout (transformer input)": p["hidden_dropout"],
        **{key: p[key] for key in ("feat_proj_dropout", "layerdrop", "mask_time_prob",
                                   "mask_time_length", "mask_feature_prob",
                                   "mask_feature_length", "final_dropout")},
    }
    if as_published:  # inside the layers, and the time-mask probability: the checkpoint's
        expected = {**written, "attention_dropout": CKPT["attention_dropout"],
                    "activation_dropout": CKPT["activation_dropout"],
                    "hidden_dropout (layers)": CKPT["hidden_dropout"],
                    "mask_time_prob": CKPT["mask_time_prob"]}
    else:
        expected = written
    assert _rates(emb) == expected
    assert emb.wav2vec2.config.apply_spec_augment


def test_unknown_preset_and_bad_dropout(tiny):
    with pytest.raises(ValueError, match=r"'heavy'.*default, none, only_dropout"):
        Wav2vec2Embedder(str(tiny), regularisation="heavy")
    with pytest.raises(ValueError, match="dropout"):
        Wav2vec2Embedder(str(tiny), dropout=1.5)
    with pytest.raises(ValueError, match="regularisation"):
        regularisation_config("faithful")


def _time_masked_fraction(emb, wavs):
    """Fraction of frames replaced by masked_spec_embed at the transformer's input."""
    seen = {}

    def hook(module, args):
        seen["h"] = args[0].detach()

    handle = emb.wav2vec2.encoder.register_forward_pre_hook(hook)
    try:
        emb(wavs)
    finally:
        handle.remove()
    h, embed = seen["h"], emb.wav2vec2.masked_spec_embed.detach()
    is_masked = ((h == embed) | (h == 0)).all(-1) & (h == embed).any(-1)
    return is_masked.float().mean().item()


def test_time_masking_values_actually_reach_the_model(tiny):
    wavs = _wavs(batch=8, seed=1)
    torch.manual_seed(0)
    as_written = Wav2vec2Embedder(str(tiny), regularisation="only_masking",
                                  regularisation_as_published=False).train()
    published = Wav2vec2Embedder(str(tiny), regularisation="only_masking").train()
    none_published = Wav2vec2Embedder(str(tiny), regularisation="none").train()
    np.random.seed(0)  # transformers draws the masks with numpy
    high = _time_masked_fraction(as_written, wavs)
    low = _time_masked_fraction(published, wavs)
    low_none = _time_masked_fraction(none_published, wavs)
    assert high > 0.3  # p 0.5, length 10 over ~99 frames
    assert 0.05 <= low <= 0.25  # p 0.05 -> HF's minimum of 2 spans of 10 frames
    assert 0.05 <= low_none <= 0.25  # "none" still masked time in the published runs
    as_written.eval()
    assert _time_masked_fraction(as_written, wavs) == 0.0  # never in eval


def test_masking_changes_train_output_but_not_eval(tiny):
    wavs = _wavs()
    for preset, randomised in (("none", False), ("only_masking", True)):
        emb = Wav2vec2Embedder(str(tiny), regularisation=preset,
                               regularisation_as_published=False, dropout=0.0,
                               gradient_checkpointing=False)
        emb.eval()
        with torch.no_grad():
            ref = emb(wavs)
            torch.testing.assert_close(emb(wavs), ref)
            emb.train()
            train_out = emb(wavs)
        assert torch.allclose(train_out, ref, atol=1e-5) is not randomised, preset


# -- forward ----------------------------------------------------------------------------------
def test_forward_shape_pooling_and_padding(tiny):
    emb = Wav2vec2Embedder(str(tiny)).eval()
    assert not emb.padding_invariant and emb.embedding_dim == 128
    wavs = _wavs()
    lens = torch.tensor([1.0, 0.6, 0.4])
    wavs[1:, 19200:] = 0
    with torch.no_grad():
        out = emb(wavs, lens)
        assert out.shape == (3, 128)
        noisy = wavs.clone()
        noisy[2, 12800:] = torch.randn(32000 - 12800)  # padding content is ignored
        torch.testing.assert_close(emb(noisy, lens), out)
        # mean over valid frames only: equals pooling the model's own frames by hand
        n = emb.frame_lengths(torch.tensor([12800]))[0].item()
        x = wavs[2:3, :12800]
        x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        hidden = emb.wav2vec2(x).last_hidden_state[0]
        assert hidden.shape[0] == n
        alone = emb(wavs[2:3, :12800])[0]
        torch.testing.assert_close(alone, hidden.mean(0), atol=1e-5, rtol=1e-5)
    assert emb.wav2vec2.is_gradient_checkpointing


@pytest.mark.parametrize("as_published", [True, False])
def test_reset_weights(tiny, as_published):
    """As published: reset_parameters() of each module, which keeps the weight-normed
    positional convolution's pre-trained weight and masked_spec_embed; else all random."""
    saved = dict(Wav2Vec2Model.from_pretrained(tiny).named_parameters())
    loaded = dict(Wav2vec2Embedder(str(tiny)).wav2vec2.named_parameters())
    torch.manual_seed(123)
    emb = Wav2vec2Embedder(str(tiny), reset_weights=True, reset_weights_as_published=as_published)
    reset = dict(emb.wav2vec2.named_parameters())
    q_proj = "encoder.layers.0.attention.q_proj.weight"
    torch.testing.assert_close(loaded[q_proj], saved[q_proj])
    for name in (q_proj, "feature_extractor.conv_layers.0.conv.weight",
                 "feature_projection.projection.weight"):
        assert not torch.allclose(reset[name], saved[name]), name
    bias = "encoder.pos_conv_embed.conv.bias"
    assert as_published is not torch.equal(reset[bias], saved[bias])  # 0 in transformers' init
    pos_conv = Wav2Vec2Model.from_pretrained(tiny).encoder.pos_conv_embed.conv.weight
    kept = {"positional conv": torch.equal(emb.wav2vec2.encoder.pos_conv_embed.conv.weight,
                                           pos_conv),
            "masked_spec_embed": torch.equal(reset["masked_spec_embed"],
                                             saved["masked_spec_embed"])}
    assert kept == dict.fromkeys(kept, as_published)
    assert emb.wav2vec2.config.hidden_size == 128


# -- freezing ---------------------------------------------------------------------------------
def test_backbone_frozen_at():
    assert backbone_frozen_at(0, True, 3) and backbone_frozen_at(2, True, 3)
    assert not backbone_frozen_at(3, True, 3)
    assert not backbone_frozen_at(0, False, 3)
    assert backbone_frozen_at(10**6, True, None)  # never unfrozen
    assert not backbone_frozen_at(0, True, 0)
    with pytest.raises(ValueError, match="num_frozen_steps"):
        backbone_frozen_at(0, True, -1)


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("freeze_cnn", [True, False])
def test_freeze_schedule_no_update_no_gradient_then_trains(tiny, freeze_cnn):
    torch.manual_seed(0)
    emb = Wav2vec2Embedder(str(tiny), regularisation="none",
                           completely_freeze_feature_extractor=freeze_cnn)
    head = torch.nn.Linear(emb.embedding_dim, 4)
    params = list(emb.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    wavs, labels = _wavs(batch=4, samples=16000), torch.tensor([0, 1, 2, 3])
    emb.train()
    cnn = emb.wav2vec2.feature_extractor
    transformer = emb.wav2vec2.encoder
    cnn0, tr0 = _snapshot(cnn), _snapshot(transformer)
    num_frozen = 2
    for step in range(4):
        frozen = apply_freeze_schedule(emb, step, True, num_frozen)
        assert frozen == (step < num_frozen) == emb.backbone_frozen
        head0 = _snapshot(head)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(emb(wavs)), labels)
        loss.backward()
        if frozen:
            assert not emb.wav2vec2.training  # eval mode: no dropout/masking/layerdrop
            assert all(p.grad is None for p in emb.wav2vec2.parameters())
        else:
            assert emb.wav2vec2.training
            assert all(p.grad is not None for p in transformer.parameters())
        opt.step()
        changed = {n for n, p in transformer.named_parameters() if not torch.equal(p, tr0[n])}
        if frozen:
            assert not changed, f"frozen transformer updated at step {step}"
        else:
            assert changed
        assert any(not torch.equal(p, head0[n]) for n, p in head.named_parameters())
    cnn_changed = any(not torch.equal(p, cnn0[n]) for n, p in cnn.named_parameters())
    assert cnn_changed is not freeze_cnn  # completely frozen CNN never changes
    if freeze_cnn:
        assert all(p.grad is None and not p.requires_grad for p in cnn.parameters())


def test_train_eval_switch_keeps_frozen_backbone_in_eval(tiny):
    emb = Wav2vec2Embedder(str(tiny))
    emb.set_backbone_frozen(True)
    emb.train()
    assert emb.training and emb.dropout.training and not emb.wav2vec2.training
    emb.set_backbone_frozen(False)
    assert emb.wav2vec2.training
    emb.eval()
    emb.set_backbone_frozen(False)
    assert not emb.wav2vec2.training


def test_frozen_backbone_in_train_mode_masks_without_gradients(tiny):
    """As published after the first validation: frozen, but dropout and masking on."""
    emb = Wav2vec2Embedder(str(tiny))  # published regularisation: time masking p 0.05
    head = torch.nn.Linear(emb.embedding_dim, 2)
    wavs = _wavs(batch=8, seed=1)
    emb.train()
    masked = {}
    for train_mode in (False, True):
        assert apply_freeze_schedule(emb, 3, True, 10, train_mode=train_mode)
        assert emb.wav2vec2.training is train_mode
        assert emb.wav2vec2.encoder.layers[0].dropout.training is train_mode
        np.random.seed(0)
        masked[train_mode] = _time_masked_fraction(emb, wavs)
        head(emb(wavs)).sum().backward()
        assert all(p.grad is None for p in emb.wav2vec2.parameters())
        assert head.weight.grad is not None
    assert masked[False] == 0.0 and masked[True] >= 0.05
    emb.train()  # SpeechBrain's modules.train() at each interval keeps the mode
    assert emb.wav2vec2.training
    emb.eval()  # validation: eval mode whatever the freeze
    assert not emb.wav2vec2.training
    emb.train()
    assert not apply_freeze_schedule(emb, 10, True, 10, train_mode=True)  # unfrozen
    assert emb.wav2vec2.training and not emb.backbone_frozen


@pytest.mark.parametrize("as_published", [True, False])
def test_train_py_frozen_train_mode_from_the_second_validation_interval(tiny, as_published):
    """recipes/VoxCeleb/train.py: eval mode in interval 1 (before the first validation of
    training), train mode from interval 2 on if as published; no gradient either way."""
    emb = Wav2vec2Embedder(str(tiny))
    modes = []
    for epoch in (1, 2, 3):
        hparams = SimpleNamespace(wav2vec_initially_frozen=True, num_frozen_steps=100,
                                  frozen_backbone_as_published=as_published,
                                  epoch_counter=SimpleNamespace(current=epoch))
        brain = SimpleNamespace(hparams=hparams, modules=SimpleNamespace(embedder=emb),
                                optimizer_step=10 * epoch)
        emb.train()  # Brain._fit_train, then on_fit_batch_start per batch
        SpeakerBrain.on_fit_batch_start(brain, None, True)
        assert emb.backbone_frozen
        modes.append(emb.wav2vec2.training)
    assert modes == [False, as_published, as_published]


def test_checkpointer_round_trip(tiny, tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    emb = Wav2vec2Embedder(str(tiny)).eval()
    with torch.no_grad():
        for p in emb.wav2vec2.encoder.parameters():
            p.add_(0.01)  # "trained" weights, different from the folder's
        ref = emb(_wavs())
    Checkpointer(tmp_path, recoverables={"embedder": emb}).save_checkpoint()
    fresh = Wav2vec2Embedder(str(tiny), reset_weights=True).eval()
    Checkpointer(tmp_path, recoverables={"embedder": fresh}).recover_if_possible()
    with torch.no_grad():
        torch.testing.assert_close(fresh(_wavs()), ref)
