"""SpeakerVerifier (lowres.scoring.inference) and the lowres.verify CLI (stand-in embedder)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lowres.scoring.inference import RunError, SpeakerVerifier
from lowres.scoring.verify import main as verify_main

torch.set_num_threads(1)


class MeanSpectrum(torch.nn.Module):
    padding_invariant = True

    def forward(self, wavs, lens):
        spec = torch.stft(wavs, 512, 160, window=torch.hann_window(512), return_complex=True)
        return torch.log1p(spec.abs()).mean(-1)


def tone(f0, seconds=1.0, sr=16000, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (0.1 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def test_scores_paths_tensors_and_resampled_files(tmp_path):
    v = SpeakerVerifier(MeanSpectrum(), threshold=0.9)
    sf.write(tmp_path / "a.wav", tone(200), 16000)
    sf.write(tmp_path / "a8k.wav", tone(200, sr=8000, seed=1), 8000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", tone(900, seed=2), 16000)
    same = v.score(tmp_path / "a.wav", tmp_path / "a8k.wav")
    diff = v.score(tmp_path / "a.wav", tmp_path / "b.wav")
    assert same > diff
    # A tensor equals the file it came from; a tensor at 8 kHz is resampled like the file.
    assert v.score(torch.from_numpy(tone(200)), tmp_path / "a.wav") == pytest.approx(1.0)
    assert v.embed(torch.from_numpy(tone(200, sr=8000, seed=1)), sample_rate=8000) \
        .allclose(v.embed(tmp_path / "a8k.wav"), atol=1e-4)
    s, decision = v.verify(tmp_path / "a.wav", tmp_path / "a8k.wav")
    assert decision == (s >= 0.9)


def test_clear_errors(tmp_path):
    v = SpeakerVerifier(MeanSpectrum())
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        v.embed(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="mono waveform"):
        v.embed(torch.zeros(2, 100))
    sf.write(tmp_path / "a.wav", tone(200), 16000)
    with pytest.raises(RunError, match="no decision threshold"):
        v.verify(tmp_path / "a.wav", tmp_path / "a.wav")
    with pytest.raises(RunError, match="run folder not found"):
        SpeakerVerifier.from_run(tmp_path / "nope")
    with pytest.raises(RunError, match="hyperparams.yaml not found"):
        SpeakerVerifier.from_run(tmp_path)


def test_verify_cli_errors(tmp_path, capsys):
    assert verify_main([str(tmp_path / "nope"), "a.wav", "b.wav"]) == 2
    assert "run folder not found" in capsys.readouterr().err
