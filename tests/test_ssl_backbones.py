"""Any HuggingFace audio SSL checkpoint as wav2vec2_source (lowres.models.wav2vec2): each
family saved in its hub layout loads into its own class with every backbone weight from
the checkpoint; what would load partly is an error naming the keys. Tiny random
checkpoints from lowres.models.tiny_wav2vec2: no network."""

import logging

import pytest
import torch
from conftest import run_module
from safetensors.torch import load_file, save_file
from transformers import Data2VecAudioModel, HubertModel, Wav2Vec2Model, WavLMModel

from lowres.models.tiny_wav2vec2 import FAMILIES, save_tiny_wav2vec2, ssl_config
from lowres.models.wav2vec2 import IGNORED_HEADS, Wav2vec2Embedder

torch.set_num_threads(1)

# (family, norm) -> the class its checkpoint must load into
CASES = {
    ("wav2vec2", None): Wav2Vec2Model,
    ("wav2vec2_pretraining", None): Wav2Vec2Model,  # facebook/wav2vec2-base's layout
    ("wav2vec2_pretraining", "layer"): Wav2Vec2Model,  # large / XLS-R
    ("hubert", None): HubertModel,
    ("wavlm", None): WavLMModel,
    ("data2vec_audio", None): Data2VecAudioModel,
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    return {case: save_tiny_wav2vec2(root / f"{case[0]}_{case[1]}", seed=1, family=case[0],
                                     norm=case[1]) for case in CASES}


def _saved_backbone(folder):
    """The checkpoint's backbone tensors, as the bare model names them."""
    saved = load_file(folder / "model.safetensors")
    return {k.removeprefix("wav2vec2."): v for k, v in saved.items()
            if not k.startswith(IGNORED_HEADS)}


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: f"{c[0]}-{c[1] or 'base'}")
def test_hub_layout_loads_every_backbone_weight(checkpoints, case):
    folder = checkpoints[case]
    emb = Wav2vec2Embedder(str(folder), regularisation_as_published=False)
    assert type(emb.wav2vec2) is CASES[case]
    loaded = emb.wav2vec2.state_dict()
    saved = _saved_backbone(folder)
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    if case[0] == "wav2vec2_pretraining":
        assert any(k.startswith("wav2vec2.") for k in load_file(folder / "model.safetensors"))
    # the presets reach each family's modules (as written: every value)
    model = emb.wav2vec2
    assert model.encoder.dropout.p == 0.1 and model.config.layerdrop == 0.1
    assert model.feature_projection.dropout.p == 0.1 and model.config.mask_time_prob == 0.5
    assert {layer.attention.dropout for layer in model.encoder.layers} == {0.1}
    for mode in (True, False):  # training: time and feature masking on (WavLM's needed a fix)
        with torch.no_grad():
            out = emb.train(mode)(0.3 * torch.randn(2, 16000), torch.tensor([1.0, 0.7]))
        assert out.shape == (2, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("family", ["hubert", "wavlm", "data2vec_audio"])
def test_reset_and_freeze_work_for_each_family(checkpoints, family):
    folder = checkpoints[(family, None)]
    saved = _saved_backbone(folder)
    for as_published in (True, False):
        torch.manual_seed(0)
        emb = Wav2vec2Embedder(str(folder), reset_weights=True,
                               reset_weights_as_published=as_published)
        q_proj = emb.wav2vec2.state_dict()["encoder.layers.0.attention.q_proj.weight"]
        assert not torch.allclose(q_proj, saved["encoder.layers.0.attention.q_proj.weight"])
    emb = Wav2vec2Embedder(str(folder)).train()
    emb.set_backbone_frozen(True)
    head = torch.nn.Linear(emb.embedding_dim, 2)
    head(emb(0.3 * torch.randn(2, 16000))).sum().backward()
    assert all(p.grad is None for p in emb.wav2vec2.parameters())
    assert head.weight.grad is not None
    assert all(not p.requires_grad for p in emb.wav2vec2.feature_extractor.parameters())


def test_a_missing_backbone_tensor_is_an_error_naming_it(checkpoints, tmp_path):
    folder = save_tiny_wav2vec2(tmp_path / "cut", family="hubert")
    tensors = load_file(folder / "model.safetensors")
    del tensors["encoder.layers.1.attention.k_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing from the checkpoint.*"
                                         r"encoder\.layers\.1\.attention\.k_proj\.weight"):
        Wav2vec2Embedder(str(folder))


def test_wavlm_loads_as_wavlm_and_forced_into_wav2vec2_is_an_error(checkpoints):
    """Before: a WavLM checkpoint became a Wav2Vec2Model that silently dropped its gated
    relative position bias. auto reads config.json's model_type; forcing the wrong class
    names the tensors that would be dropped."""
    folder = str(checkpoints[("wavlm", None)])
    assert type(Wav2vec2Embedder(folder).wav2vec2) is WavLMModel
    with pytest.raises(ValueError, match=r"into Wav2Vec2Model \(config.json model_type wavlm\)"
                                         r".*no place for.*gru_rel_pos_const.*rel_attn_embed"):
        Wav2vec2Embedder(folder, model_type="wav2vec2")
    with pytest.raises(ValueError, match=r"'whisper'.*valid: auto, wav2vec2, hubert"):
        Wav2vec2Embedder(folder, model_type="whisper")


def test_pretraining_heads_are_dropped_with_a_log_line(checkpoints, caplog):
    with caplog.at_level(logging.INFO, logger="lowres.models.wav2vec2"):
        Wav2vec2Embedder(str(checkpoints[("wav2vec2_pretraining", None)]))
    assert "ignored the checkpoint's tensors" in caplog.text
    assert "quantizer.codevectors" in caplog.text and "project_q.weight" in caplog.text


def test_cli_writes_each_family_in_hub_layout(tmp_path):
    run_module("lowres.tiny_wav2vec2", "--family", "wavlm", "--out", tmp_path / "m")
    assert type(Wav2vec2Embedder(str(tmp_path / "m")).wav2vec2) is WavLMModel
    assert set(FAMILIES) == {"wav2vec2", "wav2vec2_pretraining", "hubert", "wavlm",
                             "data2vec_audio"}
    with pytest.raises(ValueError, match="layer-norm CNN only"):
        ssl_config("data2vec_audio", norm="group")


# -- ssl_pooling: weighted_sum --------------------------------------------------------------
@pytest.mark.parametrize("frozen", [False, True])
def test_layer_weights_train_also_with_a_frozen_backbone(checkpoints, frozen):
    """The weights get gradients and change with a step; a frozen backbone (run under
    no_grad) gets none: the weighted sum is computed outside its no_grad."""
    torch.manual_seed(0)
    emb = Wav2vec2Embedder(str(checkpoints[("wavlm", None)]), pooling="weighted_sum",
                           regularisation="none").train()
    assert emb.layer_weights.shape == (3,) and not emb.layer_weights.any()  # equal weights
    emb.set_backbone_frozen(frozen)
    head = torch.nn.Linear(emb.embedding_dim, 4)
    opt = torch.optim.Adam([*emb.parameters(), *head.parameters()], lr=1e-2)
    before = emb.layer_weights.detach().clone()
    loss = torch.nn.functional.cross_entropy(head(emb(0.3 * torch.randn(4, 16000))),
                                             torch.arange(4))
    loss.backward()
    assert emb.layer_weights.grad is not None and emb.layer_weights.grad.abs().sum() > 0
    transformer = list(emb.wav2vec2.encoder.parameters())
    if frozen:
        assert all(p.grad is None for p in emb.wav2vec2.parameters())
    else:
        assert all(p.grad is not None for p in transformer)
    opt.step()
    assert not torch.equal(emb.layer_weights, before)


def test_weighted_sum_pools_the_softmax_weighted_hidden_states(checkpoints):
    emb = Wav2vec2Embedder(str(checkpoints[("hubert", None)]), pooling="weighted_sum").eval()
    with torch.no_grad():
        emb.layer_weights.copy_(torch.tensor([0.0, -30.0, 30.0]))  # ~ all on the last layer
        wavs = 0.3 * torch.randn(1, 16000)
        last = Wav2vec2Embedder(str(checkpoints[("hubert", None)])).eval()(wavs)
        torch.testing.assert_close(emb(wavs), last, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="ssl_pooling 'max'.*last, weighted_sum"):
        Wav2vec2Embedder(str(checkpoints[("hubert", None)]), pooling="max")
