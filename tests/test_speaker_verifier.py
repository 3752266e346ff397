"""SpeakerVerifier (lowres.scoring.speaker_verifier) and the lowres.verify CLI (stand-in
embedder)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lowres.scoring.speaker_verifier import RunError, SpeakerVerifier
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


def test_verify_cli_prints_one_decision_and_what_led_to_it(tmp_path, capsys):
    """One verdict: by default the calibrated one at the stated prior, with the score, LLR and
    threshold behind it; --eer_threshold decides at the EER threshold; a run without a
    calibration falls back to it and says so."""
    from tiny_run import make_run

    cal = {"scale": 40.0, "offset": -39.0, "prior": 0.5, "trained_on": "validation"}
    run = make_run(tmp_path / "run", {"validation": {"eer_threshold": 0.9},
                                      "calibration": cal})
    v = SpeakerVerifier.from_run(run)
    assert v.calibration == (40.0, -39.0)
    sf.write(tmp_path / "a.wav", tone(200), 16000)
    sf.write(tmp_path / "b.wav", tone(900, seed=2), 16000)
    a, b = str(tmp_path / "a.wav"), str(tmp_path / "b.wav")
    score = v.score(a, b)
    llr = 40.0 * score - 39.0
    assert v.llr(a, b) == pytest.approx(llr)
    assert v.decide(a, b, 0.05) == (pytest.approx(llr), llr >= np.log(19))
    for p_target, llr_threshold in ((0.05, np.log(19)), (0.9, -np.log(9))):
        threshold = (llr_threshold + 39.0) / 40.0  # the score whose LLR is the Bayes threshold
        assert v.decision_threshold(p_target).score == pytest.approx(threshold)
        assert verify_main([str(run), a, b, "--p_target", str(p_target)]) == 0
        out, err = capsys.readouterr()
        decision = "same" if llr >= llr_threshold else "different"
        assert out.splitlines() == [
            f"score {score:.4f}", f"llr {llr:.3f}",
            f"threshold {threshold:.4f} (calibrated at p_target {p_target:g}: "
            f"LLR >= {llr_threshold:.3f})", f"{decision} speaker"]
        assert not err
    assert verify_main([str(run), a, b, "--eer_threshold"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [
        "threshold 0.9000 (the EER threshold on the validation trials)",
        f"{'same' if score >= 0.9 else 'different'} speaker"]
    for bad in (["--p_target", "1"], ["--eer_threshold", "--threshold", "0.5"]):
        with pytest.raises(SystemExit) as exit_info:
            verify_main([str(run), a, b, *bad])
        assert exit_info.value.code == 2
    # A run evaluated before calibration existed: the EER threshold's decision, said so.
    old = make_run(tmp_path / "old", {"validation": {"eer_threshold": 0.9}})
    assert verify_main([str(old), a, b]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"score {score:.4f}",
                                "threshold 0.9000 (the EER threshold on the validation trials)",
                                f"{'same' if score >= 0.9 else 'different'} speaker"]
    assert "no score calibration" in err and "deciding at the EER threshold instead" in err
    with pytest.raises(RunError, match="no score calibration"):
        SpeakerVerifier.from_run(old).llr(a, b)
