"""HuBERT-style masked prediction (lowres.training.masked_prediction): targets at the CNN's
frame rate, k-means fitted from the data, an objective that trains, and a saved backbone
that train.py's embedder loads whole."""

import pytest
import torch
from test_pretrain import adam_losses_on_one_batch, assert_saved_backbone_loads_whole

from lowres.io.hparams import HparamsError


def masked_prediction(**kwargs):
    from lowres.training.masked_prediction import MaskedPrediction

    torch.manual_seed(0)
    return MaskedPrediction(**{"source": "tiny", "num_clusters": 8, "kmeans_crops": 12,
                               **kwargs})


def crops(n, seconds=1.0):
    """Items with a ``sig`` as lowres.data.loading's datasets give them: noise bursts of
    two loudness levels, so that the MFCC frames have clusters to find."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        sig = torch.randn(int(16000 * seconds), generator=g) * 0.1
        sig[: len(sig) // 2] *= 0.01 if i % 2 else 1.0
        out.append({"sig": sig})
    return out


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_targets_have_one_frame_per_cnn_frame(size):
    from lowres.training.masked_prediction import MaskedPrediction

    model = MaskedPrediction(source=size, num_clusters=4)
    for n in (16000, 32000, 27123):
        frames = int(model.wav2vec2._get_feat_extract_output_lengths(n))
        assert model.targets(torch.randn(2, n), frames).shape == (2, frames, 39)


def test_kmeans_is_fitted_from_the_crops_and_seeded():
    a, b = masked_prediction(), masked_prediction()
    assert torch.count_nonzero(a.centroids) == 0  # nothing before fit_targets
    a.fit_targets(crops(12))
    b.fit_targets(crops(12))
    assert torch.equal(a.centroids, b.centroids) and a.centroids.abs().sum() > 0
    c = masked_prediction(kmeans_seed=1)
    c.fit_targets(crops(12))
    assert not torch.equal(a.centroids, c.centroids)
    assert "centroids" in a.state_dict()  # so a checkpoint keeps the targets
    with pytest.raises(HparamsError, match="num_clusters=8"):
        masked_prediction().fit_targets(crops(1, seconds=0.05))


def test_objective_trains_on_one_batch():
    """cross-entropy of the masked (valid) frames' cluster ids; Adam steps on one batch with
    the same masks lower it."""
    from lowres.training.pretrain import numpy_seeded

    model = masked_prediction(mask_time_prob=0.5, mask_time_length=2)
    model.fit_targets(crops(12))
    wavs, lens = torch.stack([c["sig"] for c in crops(2)]), torch.tensor([1.0, 0.75])
    torch.manual_seed(1)  # the same dropout
    with numpy_seeded(3):
        out = model(wavs, lens)
    assert 0 < out["masked"] <= 49 + 37 and 0 <= out["accuracy"] <= 1
    assert torch.isclose(out["loss"], out["masked_loss"]) and "unmasked_loss" not in out
    model.unmasked_weight = 0.5  # HuBERT's pred_nomask_weight: the unmasked frames count too
    torch.manual_seed(1)
    with numpy_seeded(3):
        both = model(wavs, lens)
    assert torch.isclose(both["loss"], both["masked_loss"] + 0.5 * both["unmasked_loss"])
    assert torch.isclose(both["masked_loss"], out["masked_loss"])
    model.unmasked_weight = 0.0
    losses = adam_losses_on_one_batch(model, wavs, lens)
    assert losses[-1] < losses[0]
    assert model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.grad is not None


def test_saved_backbone_loads_whole_into_the_embedder(tmp_path):
    assert_saved_backbone_loads_whole(masked_prediction(), tmp_path / "pretrained",
                                      masked_prediction)
    with pytest.raises(HparamsError, match="model_source='nowhere'"):
        masked_prediction(source="nowhere")


def test_targets_are_finite_under_fp16_autocast():
    """A loud burst in a quiet crop, normalised as the objective normalises it, has
    power-spectrum bins beyond fp16's 65504: the MFCC runs in fp32 inside the training
    autocast, so no frame of the crop turns inf / NaN (and all labelled cluster 0)."""
    from lowres.models.wav2vec2 import normalise_waveform

    model = masked_prediction()
    sig = torch.randn(1, 32000, generator=torch.Generator().manual_seed(0)) * 1e-3
    t = torch.arange(800) / 16000
    sig[0, 16000:16800] = torch.sin(2 * torch.pi * 440 * t)
    x, _ = normalise_waveform(sig, torch.tensor([32000]))
    frames = int(model.wav2vec2._get_feat_extract_output_lengths(32000))
    fp32 = model.targets(x, frames)
    with torch.autocast("cpu", dtype=torch.float16):
        feats = model.targets(x, frames)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    torch.testing.assert_close(feats, fp32)
