"""Using a trained run: embed recordings and score pairs of them.

    from lowres.scoring.speaker_verifier import SpeakerVerifier
    v = SpeakerVerifier.from_run("results/ecapa_tiny_few/lr0.0178_steps50000_seed1337")
    v.score("a.wav", "b.wav")          # cosine similarity in [-1, 1]
    v.verify("a.wav", "b.wav")         # (score, same_speaker) at the validation EER threshold
    v.llr("a.wav", "b.wav")            # calibrated log-likelihood ratio
    v.decide("a.wav", "b.wav", 0.05)   # (llr, same_speaker) at the Bayes threshold of p_target

``from_run`` rebuilds the model from the run's resolved ``hyperparams.yaml``,
loads the embedder weights of its best (or last) checkpoint and reads the
decision threshold from ``eval/<checkpoint>/results.json`` (the EER threshold
on the validation trials, whole utterances; written by ``eval.py`` or by
train.py's evaluation after training) and the score calibration fitted on the same
trials (:mod:`lowres.scoring.calibration`), which turns a cosine score into a
log-likelihood ratio and so a decision for any prior.  Runs on CPU by default.

Audio: files are read with soundfile; multi-channel audio is averaged to mono
and any sample rate other than 16 kHz is resampled to 16 kHz (as the models
were trained on 16 kHz VoxCeleb).  A tensor is taken as a 16 kHz waveform
unless ``sample_rate`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lowres.io.audio import SAMPLE_RATE, load_audio
from lowres.io.run_folder import read_results
from lowres.scoring.calibration import Calibration, bayes_threshold

__all__ = ["SpeakerVerifier", "RunError"]


class RunError(FileNotFoundError):
    """The run folder lacks something needed (hyperparams, checkpoint, threshold)."""


class SpeakerVerifier:
    """A speaker embedder plus a same/different threshold and a calibration of its scores."""

    def __init__(self, embedder: torch.nn.Module, threshold: float | None = None,
                 device: str | torch.device = "cpu", calibration: Calibration | None = None):
        self.device = torch.device(device)
        self.embedder = embedder.to(self.device).eval()
        self.threshold = threshold
        self.calibration = calibration

    @classmethod
    def from_run(cls, output_folder: str | os.PathLike, checkpoint: str = "best",
                 device: str | torch.device = "cpu") -> SpeakerVerifier:
        """Load a run folder written by train.py (see the module docstring)."""
        from lowres.scoring.checkpoints import (
            EvaluationError,
            load_checkpoint,
            load_run_hparams,
        )

        out = Path(output_folder)
        if not out.is_dir():
            raise RunError(f"run folder not found: {out}")
        try:
            hparams = load_run_hparams(out)
            load_checkpoint(hparams, checkpoint)
        except EvaluationError as err:
            raise RunError(str(err)) from err
        threshold = calibration = None
        stored = read_results(out, checkpoint)
        if stored is not None:
            threshold = (stored.get("validation") or {}).get("eer_threshold")
            if stored.get("calibration"):
                calibration = Calibration.from_dict(stored["calibration"])
        return cls(hparams["embedder"], threshold, device, calibration)

    def _waveform(self, audio, sample_rate: int) -> torch.Tensor:
        if isinstance(audio, (str, os.PathLike)):
            return load_audio(audio)
        wav = torch.as_tensor(audio, dtype=torch.float32)
        if wav.ndim == 2 and 1 in wav.shape:
            wav = wav.reshape(-1)
        if wav.ndim != 1 or wav.numel() == 0:
            raise ValueError(f"expected a non-empty mono waveform [T], got shape "
                             f"{tuple(wav.shape)}")
        if sample_rate != SAMPLE_RATE:
            import torchaudio.functional as taf

            wav = taf.resample(wav, sample_rate, SAMPLE_RATE)
        return wav

    @torch.no_grad()
    def embed(self, audio, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Embedding ``[D]`` of a file path or a waveform tensor (whole utterance)."""
        wav = self._waveform(audio, sample_rate).to(self.device)
        emb = self.embedder(wav[None], torch.ones(1, device=self.device))
        return emb.reshape(-1).float().cpu()

    def score(self, a, b, sample_rate: int = SAMPLE_RATE) -> float:
        """Cosine similarity of two recordings (paths or waveforms)."""
        ea, eb = self.embed(a, sample_rate), self.embed(b, sample_rate)
        return float(torch.nn.functional.cosine_similarity(ea, eb, dim=0))

    def verify(self, a, b, sample_rate: int = SAMPLE_RATE) -> tuple[float, bool]:
        """``(score, same_speaker)``: same when the score reaches the threshold."""
        if self.threshold is None:
            raise RunError("no decision threshold: run recipes/VoxCeleb/eval.py on the run "
                           "(it stores the validation EER threshold) or set .threshold")
        s = self.score(a, b, sample_rate)
        return s, s >= self.threshold

    def llr(self, a, b, sample_rate: int = SAMPLE_RATE) -> float:
        """Log-likelihood ratio (same vs different speaker) of the calibrated score."""
        if self.calibration is None:
            raise RunError("no score calibration: run recipes/VoxCeleb/eval.py on the run (it "
                           "fits one on the validation trials) or set .calibration")
        return float(self.calibration.llr(self.score(a, b, sample_rate)))

    def decide(self, a, b, p_target: float, sample_rate: int = SAMPLE_RATE) -> tuple[float, bool]:
        """``(llr, same_speaker)``: same when the LLR reaches the Bayes threshold of
        ``p_target`` (the prior of "same speaker"; equal costs of both errors)."""
        threshold = bayes_threshold(p_target)
        llr = self.llr(a, b, sample_rate)
        return llr, llr >= threshold
