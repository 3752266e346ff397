"""ssl_pooling: mhfa (lowres.models.mhfa): multi-head factorized attentive pooling of all the
SSL model's hidden states. The module alone on random hidden states, then inside the
Wav2vec2Embedder on tiny random checkpoints (no network)."""

import json

import pytest
import torch
from conftest import ROOT

from lowres.io.hparams import HparamsError, load_hparams, plain_values
from lowres.models.mhfa import MHFA
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2
from lowres.models.wav2vec2 import Wav2vec2Embedder
from lowres.training.speaker_checks import check_hparams

torch.set_num_threads(1)
HPARAMS = ROOT / "hparams"
SMALL = {"mhfa_heads": 4, "mhfa_compression_dim": 8, "mhfa_embedding_dim": 12}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("mhfa")
    return {norm: save_tiny_wav2vec2(root / norm, seed=3, norm=norm)
            for norm in ("group", "layer")}


def _embedder(folder, **kwargs):
    return Wav2vec2Embedder(str(folder), pooling="mhfa", regularisation="none",
                            **{**SMALL, **kwargs})


# -- the module ----------------------------------------------------------------------------
def test_module_pools_hidden_states_to_one_embedding_per_utterance():
    torch.manual_seed(0)
    mhfa = MHFA(3, 16, heads=4, compression_dim=8, embedding_dim=12)
    assert mhfa.layer_weights.shape == (2, 3) and not mhfa.layer_weights.any()  # equal
    hidden = torch.randn(3, 2, 10, 16)
    out = mhfa(hidden, torch.tensor([10, 6]))
    assert out.shape == (2, 12) and torch.isfinite(out).all()
    torch.testing.assert_close(mhfa(tuple(hidden), torch.tensor([10, 6])), out)  # a tuple too
    with pytest.raises(ValueError, match="got 4 hidden states for 3 layer weights"):
        mhfa(torch.randn(4, 2, 10, 16), torch.tensor([10, 6]))
    with pytest.raises(ValueError, match="heads must be a positive integer, got 0"):
        MHFA(3, 16, heads=0)


def test_module_ignores_padded_frames():
    """An utterance of 7 frames alone and padded to 12 frames (with garbage, not zeros) in a
    batch beside a longer one: the same embedding."""
    torch.manual_seed(1)
    mhfa = MHFA(3, 16, heads=4, compression_dim=8, embedding_dim=12)
    with torch.no_grad():
        mhfa.layer_weights.normal_()  # keys and values weighted differently
        short, long = torch.randn(3, 1, 7, 16), torch.randn(3, 1, 12, 16)
        padded = torch.cat([torch.cat([short, 100 * torch.randn(3, 1, 5, 16)], 2), long], 1)
        alone = mhfa(short, torch.tensor([7]))
        batch = mhfa(padded, torch.tensor([7, 12]))
    torch.testing.assert_close(batch[:1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1:], mhfa(long, torch.tensor([12])), atol=1e-5, rtol=1e-5)


# -- in the embedder -----------------------------------------------------------------------
def test_yaml_builds_the_papers_sizes(checkpoints):
    h = load_hparams(HPARAMS / "wav2vec2_tiny_few.yaml",
                     {"wav2vec2_source": str(checkpoints["group"]), "ssl_pooling": "mhfa",
                      "n_speakers": 5})
    emb = h["embedder"]
    assert h["embedding_dim"] == emb.embedding_dim == 256
    assert (emb.mhfa.attention.out_features, emb.mhfa.key_compression.out_features) == (64, 128)
    assert emb.mhfa.layer_weights.shape == (2, 3)  # CNN projection + the tiny model's 2 layers
    with torch.no_grad():
        out = emb.eval()(0.3 * torch.randn(2, 16000), torch.tensor([1.0, 0.8]))
    assert out.shape == (2, 256) and h["classifier"](out.unsqueeze(1)).shape == (2, 1, 5)


def test_mhfa_trains_while_the_backbone_is_frozen(checkpoints):
    torch.manual_seed(0)
    emb = _embedder(checkpoints["group"]).train()
    emb.set_backbone_frozen(True)
    head = torch.nn.Linear(emb.embedding_dim, 4)
    opt = torch.optim.Adam([*emb.parameters(), *head.parameters()], lr=1e-2)
    before = emb.mhfa.layer_weights.detach().clone()
    loss = torch.nn.functional.cross_entropy(
        head(emb(0.3 * torch.randn(4, 16000), torch.tensor([1.0, 0.9, 0.8, 0.7]))),
        torch.arange(4))
    loss.backward()
    assert all(p.grad is None for p in emb.wav2vec2.parameters())
    grads = {name: p.grad for name, p in emb.mhfa.named_parameters()}
    assert set(grads) == {"layer_weights", "key_compression.weight", "value_compression.weight",
                          "attention.weight", "projection.weight", "projection.bias"}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), grads
    assert (grads["layer_weights"].abs() > 0).all()  # keys' and values' weights of each layer
    opt.step()
    assert not torch.equal(emb.mhfa.layer_weights, before)


def test_layer_norm_model_embeds_an_utterance_alone_as_in_a_padded_batch(checkpoints):
    """The layer-norm CNN model gets an attention mask and MHFA a masked softmax: padding
    does not change an embedding (the group-norm CNN normalises over the padding)."""
    emb = _embedder(checkpoints["layer"]).eval()
    gen = torch.Generator().manual_seed(4)
    short, long = 0.3 * torch.randn(1, 16000, generator=gen), \
        0.3 * torch.randn(1, 25600, generator=gen)
    batch = torch.cat([torch.nn.functional.pad(short, (0, 9600)), long])
    with torch.no_grad():
        alone = emb(short, torch.ones(1))
        padded = emb(batch, torch.tensor([16000 / 25600, 1.0]))
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=1e-5)


# -- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("mhfa_heads", 0), ("mhfa_compression_dim", -8),
                                        ("mhfa_embedding_dim", 2.5), ("mhfa_heads", True)])
def test_sizes_must_be_positive_integers(checkpoints, key, value):
    with pytest.raises(HparamsError, match=f"invalid hparam {key}={value!r}"):
        _embedder(checkpoints["group"], **{key: value})
    values = plain_values(HPARAMS / "wav2vec2_tiny_few.yaml",
                          {"ssl_pooling": "mhfa", key: value})
    with pytest.raises(HparamsError, match=f"invalid hparam {key}={value!r}"):
        check_hparams(values, world_size=1)
    # the sizes matter only to mhfa
    check_hparams(plain_values(HPARAMS / "wav2vec2_tiny_few.yaml", {key: value}), world_size=1)


def test_mhfa_with_a_backend_is_refused(checkpoints):
    match = "ssl_pooling='mhfa': cannot be combined with an ssl_backend"
    with pytest.raises(HparamsError, match=match):
        _embedder(checkpoints["group"], backend=torch.nn.Identity)
    # the SSL-ECAPA files set a backend: train.py refuses before building anything
    with pytest.raises(HparamsError, match=match):
        check_hparams(plain_values(HPARAMS / "ssl_ecapa_tiny_few.yaml", {"ssl_pooling": "mhfa"}),
                      world_size=1)


def test_a_backbone_without_transformer_layers_is_refused(tmp_path):
    folder = save_tiny_wav2vec2(tmp_path / "no_layers")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 0}))
    with pytest.raises(HparamsError, match="ssl_pooling='mhfa': needs a backbone with "
                                           "transformer layers.*num_hidden_layers=0"):
        _embedder(folder)
