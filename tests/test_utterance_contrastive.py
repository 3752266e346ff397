"""Utterance-level contrastive pre-training (lowres.training.utterance_contrastive): two
views per crop, a random channel per view, SimCLR's loss, an objective that trains the CNN,
and a saved backbone that train.py's embedder loads whole."""

import pytest
import torch
from test_pretrain import adam_losses_on_one_batch, assert_saved_backbone_loads_whole

from lowres.io.hparams import HparamsError


def utterance_contrastive(**kwargs):
    from lowres.training.utterance_contrastive import UtteranceContrastive

    torch.manual_seed(0)
    return UtteranceContrastive(**{"source": "tiny", **kwargs})


def test_each_crop_makes_two_views_of_its_valid_samples():
    from lowres.training.utterance_contrastive import halves

    wavs = torch.arange(2 * 10, dtype=torch.float).reshape(2, 10) + 1
    views, lens = halves(wavs, torch.tensor([1.0, 0.6]))  # 10 and 6 valid samples
    assert views.shape == (4, 5)
    assert views[0].tolist() == [1, 2, 3, 4, 5] and views[2].tolist() == [6, 7, 8, 9, 10]
    assert views[1].tolist() == [11, 12, 13, 0, 0] and views[3].tolist() == [14, 15, 16, 0, 0]
    assert lens.tolist() == pytest.approx([1.0, 0.6, 1.0, 0.6])


def test_nt_xent_rewards_finding_the_partner():
    from lowres.training.utterance_contrastive import nt_xent

    z = torch.eye(4)
    good, acc = nt_xent(torch.cat([z, z]), 0.1)  # each view's partner is its copy
    assert acc == 1 and good < 0.01
    bad, acc = nt_xent(torch.cat([z, z.roll(1, 0)]), 0.1)  # partners point elsewhere
    assert acc == 0 and bad > 5


def test_random_channel_differs_per_view_keeps_padding_silent_and_is_seeded():
    from lowres.training.utterance_contrastive import RandomChannel

    channel = RandomChannel(eq_db=6.0, snr_low=10.0, snr_high=20.0)
    wav = torch.randn(16000)
    wavs, lens = torch.stack([wav, wav]), torch.tensor([1.0, 0.5])
    torch.manual_seed(3)
    a = channel(wavs, lens)
    torch.manual_seed(3)
    assert torch.equal(a, channel(wavs, lens))  # torch's generator: checkpointed by runs
    assert not torch.allclose(a[0, :8000], a[1, :8000], atol=1e-3)  # its own per view
    assert torch.count_nonzero(a[1, 8000:]) == 0
    spectrum = torch.fft.rfft(a[0]).abs() / torch.fft.rfft(wav).abs()
    assert spectrum[1000:4000].mean() != pytest.approx(1.0, abs=0.05)  # coloured
    off = RandomChannel(eq_db=0.0, snr_low=None)
    assert torch.equal(off(wavs[:1], lens[:1]), wavs[:1])


def test_objective_trains_the_cnn_on_one_batch():
    g = torch.Generator().manual_seed(0)
    wavs = torch.randn(4, 16000, generator=g) * torch.tensor([[0.1], [1.0], [0.3], [3.0]])
    model = utterance_contrastive(mask_time_prob=0.2)
    out = model(wavs, torch.tensor([1.0, 1.0, 0.8, 1.0]))
    assert 0 <= out["accuracy"] <= 1 and out["loss"] > 0
    losses = adam_losses_on_one_batch(model, wavs, torch.ones(4))
    assert losses[-1] < losses[0]
    assert model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.grad is not None
    with pytest.raises(HparamsError, match="temperature=0"):
        utterance_contrastive(temperature=0)


def test_saved_backbone_loads_whole_into_the_embedder(tmp_path):
    assert_saved_backbone_loads_whole(utterance_contrastive(), tmp_path / "pretrained",
                                      utterance_contrastive)
