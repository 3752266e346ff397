"""MFCC front-end (lowres.models.features): shapes, normalisation, SpecAugment, padding."""

import pytest
import torch

from lowres.models.features import MfccFrontend

torch.set_num_threads(1)


def _wavs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        t = torch.arange(n) / 16000
        f0 = 100 + 300 * torch.rand(1, generator=g)
        out.append(0.5 * torch.sin(2 * torch.pi * f0 * t) + 0.05 * torch.randn(n, generator=g))
    return out


def _batch(wavs):
    T = max(len(w) for w in wavs)
    x = torch.zeros(len(wavs), T)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = w
    return x, torch.tensor([len(w) / T for w in wavs])


def test_shape_and_frame_rate():
    fe = MfccFrontend().eval()
    feats = fe(torch.randn(3, 32000), torch.ones(3))
    # 12.5 ms hop = 200 samples: 2 s -> 1 + 32000 // 200 = 161 frames, 80 coefficients
    assert feats.shape == (3, 161, 80)
    assert fe.stft.win_length == 400 and fe.hop == 200
    assert fe.filterbank.n_mels == 128


def test_per_utterance_normalisation_over_valid_frames_only():
    fe = MfccFrontend(spec_augment=False).eval()
    x, lens = _batch(_wavs([32000, 20000, 9000]))
    feats = fe(x, lens)
    frame_lens = fe.frame_lens(lens, x.shape[1])
    for i in range(3):
        n = int(round(frame_lens[i].item() * feats.shape[1]))
        assert n == 1 + int(lens[i] * x.shape[1] + 0.5) // 200
        valid = feats[i, :n]
        assert valid.mean(0).abs().max() < 1e-4
        assert (valid.std(0, unbiased=False) - 1).abs().max() < 1e-3
        assert (feats[i, n:] == 0).all()  # padding frames zeroed


def test_batched_equals_one_at_a_time():
    fe = MfccFrontend().eval()
    wavs = _wavs([32000, 20001, 9000, 31999])
    x, lens = _batch(wavs)
    feats = fe(x, lens)
    frame_lens = fe.frame_lens(lens, x.shape[1])
    for i, w in enumerate(wavs):
        alone = fe(w[None], torch.ones(1))[0]
        n = int(round(frame_lens[i].item() * feats.shape[1]))
        assert n == alone.shape[0]
        torch.testing.assert_close(feats[i, :n], alone, atol=1e-4, rtol=1e-4)


def test_padding_content_is_ignored():
    fe = MfccFrontend(spec_augment=False).eval()
    x, lens = _batch(_wavs([32000, 16000]))
    noisy = x.clone()
    noisy[1, 16000:] = torch.randn(16000)
    torch.testing.assert_close(fe(x, lens), fe(noisy, lens))


def test_spec_augment_train_only():
    fe = MfccFrontend()
    x = torch.stack(_wavs([32000, 32000]))
    fe.eval()
    a, b = fe(x), fe(x)
    torch.testing.assert_close(a, b)
    fe.train()
    torch.manual_seed(1)
    c = fe(x)
    assert not torch.allclose(a, c)
    no_aug = MfccFrontend(spec_augment=False).train()
    torch.testing.assert_close(no_aug(x), a)


class _NoNorm(torch.nn.Module):
    def forward(self, x, valid):
        return x


def test_spec_augment_mask_counts_and_sizes():
    """Masks act on raw MFCCs (zeros there) before normalisation: check them on raw values."""
    fe = MfccFrontend().train()
    fe.norm = _NoNorm()  # look at the masked MFCC matrix itself
    x = torch.stack(_wavs([32000] * 8, seed=3))
    torch.manual_seed(0)
    for _ in range(5):
        feats = fe(x)
        zero_frames = (feats == 0).all(2)  # [B, frames]
        zero_bins = (feats == 0).all(1)  # [B, coefficients]
        for i in range(feats.shape[0]):
            # 5-10 masks of 0-10 frames, possibly overlapping: at most 100 frames
            assert zero_frames[i].sum() <= 100
            # 1-3 masks of 0-4 coefficients: at most 12 coefficients
            assert zero_bins[i].sum() <= 12
        assert zero_frames.any() and zero_bins.any()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_mfcc": 0}, "n_mfcc"),
        ({"n_mfcc": 200}, "n_mels"),
        ({"hop_length_ms": -1}, "hop_length_ms"),
    ],
)
def test_bad_values_raise_with_name(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        MfccFrontend(**kwargs)
