"""MFCC embedders (lowres.models.xvector_ecapa) with SpeechBrain's Xvector and ECAPA_TDNN."""

import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.lobes.models.Xvector import Xvector

from lowres.models.features import MfccFrontend
from lowres.models.xvector_ecapa import MfccEmbedder

torch.set_num_threads(1)

LENGTHS = [24000, 16001, 9000, 24000, 16001]  # two pairs of equal lengths share one call


def _build(kind):
    torch.manual_seed(0)
    if kind == "xvector":
        backbone, dim = Xvector(in_channels=80), 512
    else:
        backbone, dim = ECAPA_TDNN(input_size=80, channels=[128, 128, 128, 128, 384]), 192
    return MfccEmbedder(MfccFrontend(), backbone), dim


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(LENGTHS)
    wavs = [0.3 * torch.randn(n, generator=g) for n in LENGTHS]
    x = torch.zeros(len(wavs), T)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = w
    return wavs, x, torch.tensor([n / T for n in LENGTHS])


@pytest.mark.parametrize("kind", ["xvector", "ecapa"])
def test_output_shape_and_dim(kind):
    model, dim = _build(kind)
    assert model.embedding_dim == dim
    _, x, lens = _batch()
    model.train()
    assert model(x, lens).shape == (len(LENGTHS), dim)
    model.eval()
    with torch.no_grad():
        assert model(x, lens).shape == (len(LENGTHS), dim)


@pytest.mark.parametrize("kind", ["xvector", "ecapa"])
def test_batched_equals_one_at_a_time_in_eval(kind):
    model, _ = _build(kind)
    model.train()  # move BatchNorm running stats away from their init
    with torch.no_grad():
        for seed in range(3):
            _, x, lens = _batch(seed + 10)
            model(x, lens)
    model.eval()
    assert model.padding_invariant
    wavs, x, lens = _batch()
    with torch.no_grad():
        batched = model(x, lens)
        for i, w in enumerate(wavs):
            alone = model(w[None], torch.ones(1))[0]
            torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=1e-4)
        # padding content must not matter either
        noisy = x.clone()
        noisy[2, LENGTHS[2]:] = torch.randn(x.shape[1] - LENGTHS[2])
        torch.testing.assert_close(model(noisy, lens), batched, atol=1e-5, rtol=1e-5)


def test_eval_is_deterministic_and_train_augments():
    model, _ = _build("xvector")
    _, x, lens = _batch()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, lens), model(x, lens))
    model.train()
    torch.manual_seed(0)
    a = model(x[:2], lens[:2] * 0 + 1)
    torch.manual_seed(1)
    b = model(x[:2], lens[:2] * 0 + 1)
    assert not torch.allclose(a, b)  # SpecAugment draws differ


def test_gradients_reach_backbone():
    model, _ = _build("ecapa")
    model.train()
    _, x, lens = _batch()
    model(x, lens).pow(2).sum().backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
