"""Batched embedding extraction equals one-file-at-a-time extraction."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lowres.io.audio import load_audio
from lowres.scoring.batch_embedding import extract_embeddings, make_batches

torch.set_num_threads(1)


class FrameMeanEmbedder(torch.nn.Module):
    """Padding-invariant stand-in: frame-wise MLP, mean over the valid frames only."""

    padding_invariant = True
    hop = 160

    def __init__(self, dim=8):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(self.hop, 32), torch.nn.Tanh(),
                                       torch.nn.Linear(32, dim))

    def forward(self, wavs, lens):
        n_valid = torch.round(lens * wavs.shape[1]).long()
        frames = torch.nn.functional.pad(wavs, (0, -wavs.shape[1] % self.hop))
        frames = frames.view(wavs.shape[0], -1, self.hop)
        n_frames = torch.div(n_valid + self.hop - 1, self.hop, rounding_mode="floor")
        # The last partial frame must only see the utterance's own samples.
        pos = torch.arange(frames.shape[1] * self.hop).view(1, -1, self.hop)
        frames = frames * (pos < n_valid[:, None, None])
        h = self.net(frames)
        mask = (torch.arange(h.shape[1])[None] < n_frames[:, None]).float()[..., None]
        return (h * mask).sum(1) / mask.sum(1)


class GlobalNormEmbedder(FrameMeanEmbedder):
    """Sees the padding (normalises over the whole padded signal), like wav2vec2's CNN."""

    padding_invariant = False

    def forward(self, wavs, lens):
        wavs = (wavs - wavs.mean(1, keepdim=True)) / (wavs.std(1, keepdim=True) + 1e-5)
        return super().forward(wavs, lens)


@pytest.fixture
def wav_files(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [16000, 24000, 8123, 16000, 40000, 3999, 16000, 24000, 12345, 31000, 777]
    paths = []
    for i, n in enumerate(lengths):
        p = tmp_path / f"f{i}.wav"
        sf.write(p, (0.1 * rng.normal(size=n)).astype(np.float32), 16000, subtype="FLOAT")
        paths.append(str(p))
    return paths, lengths


def one_at_a_time(model, paths):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(load_audio(p)[None], torch.ones(1)) for p in paths])


@pytest.mark.parametrize("cls", [FrameMeanEmbedder, GlobalNormEmbedder])
def test_batched_equals_unbatched(wav_files, cls):
    paths, _ = wav_files
    model = cls()
    batched = extract_embeddings(model, paths, batch_size=4, progress=False)
    assert model.training  # train/eval mode restored
    single = one_at_a_time(model, paths)
    assert batched.shape == (len(paths), 8)
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["xvector", "ecapa"])
def test_batched_equals_unbatched_mfcc_embedder(wav_files, kind):
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.lobes.models.Xvector import Xvector

    from lowres.models.features import MfccFrontend
    from lowres.models.xvector_ecapa import MfccEmbedder

    torch.manual_seed(0)
    backbone = (Xvector(in_channels=80) if kind == "xvector"
                else ECAPA_TDNN(input_size=80, channels=[64, 64, 64, 64, 192]))
    model = MfccEmbedder(MfccFrontend(), backbone)
    assert model.padding_invariant
    # ECAPA's reflection padding needs more frames than the 777-sample file has.
    paths = [p for p, n in zip(*wav_files, strict=True) if n >= 4000]
    batched = extract_embeddings(model, paths, batch_size=6, progress=False)
    single = one_at_a_time(model, paths)
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)


def test_wav2vec2_groups_equal_lengths_only(wav_files, tmp_path):
    from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2
    from lowres.models.wav2vec2 import Wav2vec2Embedder

    model = Wav2vec2Embedder(str(save_tiny_wav2vec2(tmp_path / "w2v2", "tiny")))
    assert not model.padding_invariant
    paths = [p for p, n in zip(*wav_files, strict=True) if n >= 4000]
    batched = extract_embeddings(model, paths, batch_size=4, progress=False)
    torch.testing.assert_close(batched, one_at_a_time(model, paths), atol=1e-4, rtol=0)


def test_padding_really_matters_for_global_norm(wav_files):
    # Guard that the test above can fail: padding changes this model's output.
    paths, _ = wav_files
    model = GlobalNormEmbedder().eval()
    w0, w1 = load_audio(paths[0]), load_audio(paths[4])
    padded = torch.zeros(2, w1.numel())
    padded[0, : w0.numel()], padded[1] = w0, w1
    with torch.no_grad():
        both = model(padded, torch.tensor([w0.numel() / w1.numel(), 1.0]))
    assert (both[0] - one_at_a_time(model, paths[:1])[0]).abs().max() > 1e-3


def test_batching_rules():
    lengths = [10, 50, 50, 20, 50, 30]
    b = make_batches(lengths, padding_invariant=True, batch_size=2, max_batch_samples=10**9)
    assert b == [[1, 2], [4, 5], [3, 0]]  # longest first, ties keep input order
    b = make_batches(lengths, padding_invariant=False, batch_size=8)
    assert b == [[1, 2, 4], [5], [3], [0]]
    b = make_batches(lengths, padding_invariant=True, batch_size=8, max_batch_samples=90)
    assert b == [[1], [2], [4], [5, 3, 0]]  # padded size: 2*50 > 90, 3*30 <= 90
    assert sorted(sum(b, [])) == list(range(6))


def test_errors(wav_files, tmp_path):
    paths, _ = wav_files
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        extract_embeddings(FrameMeanEmbedder(), [paths[0], str(tmp_path / "missing.wav")])
    with pytest.raises(ValueError, match="duplicates"):
        extract_embeddings(FrameMeanEmbedder(), [paths[0], paths[0]])


def test_load_audio_resamples_and_downmixes(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1)
    sf.write(tmp_path / "a.wav", stereo.astype(np.float32), 8000)
    wav = load_audio(tmp_path / "a.wav")
    assert wav.ndim == 1 and wav.numel() == 16000
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over 1 s
