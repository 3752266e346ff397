"""Using a trained run: embed recordings and score pairs of them.

    from lowres.scoring.speaker_verifier import SpeakerVerifier
    v = SpeakerVerifier.from_run("results/ecapa_tiny_few/lr0.0178_steps50000_seed1337")
    v.score("a.wav", "b.wav")          # cosine similarity in [-1, 1]
    v.verify("a.wav", "b.wav")         # (score, same_speaker) at the validation EER threshold
    v.llr("a.wav", "b.wav")            # calibrated log-likelihood ratio
    v.decide("a.wav", "b.wav", 0.05)   # (llr, same_speaker) at the Bayes threshold of p_target
    v.decision_threshold(0.05)         # that decision as a threshold on the cosine score

``from_run`` rebuilds the model from the run's resolved ``hyperparams.yaml``,
loads the embedder weights of its best (or last) checkpoint and reads the
decision threshold from ``eval/<checkpoint>/results.json`` (the EER threshold
on the validation trials, whole utterances; written by ``eval.py`` or by
train.py's evaluation after training) and the score calibration fitted on the same
trials (:mod:`lowres.scoring.calibration`), which turns a cosine score into a
log-likelihood ratio and so a decision for any prior.  Runs on CPU by default.

One rule decides wherever a run is used (``python -m lowres.verify``, an exported
SpeechBrain folder): :func:`run_threshold`, the calibrated decision at the prior
``p_target`` (default :data:`DEFAULT_P_TARGET`), or the EER threshold when asked for or
when the run has no calibration.

Audio: files are read with soundfile; multi-channel audio is averaged to mono
and any sample rate other than 16 kHz is resampled to 16 kHz (as the models
were trained on 16 kHz VoxCeleb).  A tensor is taken as a 16 kHz waveform
unless ``sample_rate`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

from lowres.io.audio import SAMPLE_RATE, load_audio
from lowres.io.device import check_device
from lowres.io.run_folder import read_results
from lowres.scoring.calibration import Calibration, bayes_threshold

__all__ = ["DEFAULT_P_TARGET", "RunError", "SpeakerVerifier", "Threshold", "run_threshold",
           "stored_decision"]

#: Prior of "same speaker" of the default decision: the prior of the VoxSRC challenges'
#: minDCF (2020 on), the benchmark family of the VoxCeleb1 test lists; results.json reports
#: the cost of exactly this decision as act_dcf_0.05.
DEFAULT_P_TARGET = 0.05


class RunError(FileNotFoundError):
    """The run folder lacks something needed (hyperparams, checkpoint, threshold)."""


class Threshold(NamedTuple):
    """A decision on cosine scores: same speaker when the score is at least ``score``."""

    score: float
    rule: str  # what the threshold is, in words
    llr: float | None = None  # the LLR threshold it stands for, when calibrated
    fallback: str | None = None  # why the calibrated decision asked for could not be used


def stored_decision(results: dict | None) -> tuple[float | None, Calibration | None]:
    """The validation EER threshold and the score calibration in a run's results.json (as
    :func:`lowres.io.run_folder.read_results` returns it); None for each one missing."""
    results = results or {}
    calibration = results.get("calibration")
    return ((results.get("validation") or {}).get("eer_threshold"),
            Calibration.from_dict(calibration) if calibration else None)


def run_threshold(eer_threshold: float | None, calibration: Calibration | None,
                  p_target: float | None = DEFAULT_P_TARGET) -> Threshold | None:
    """A run's decision threshold on cosine scores.

    With ``p_target``, the calibrated decision (equal costs of both errors): the score whose
    LLR is the Bayes threshold of that prior.  Without (``None``), or for a run without a
    calibration that grows with the score, the EER threshold on the validation trials
    (``fallback`` says why when the calibrated one was asked for).  None: the run has
    neither.
    """
    fallback = None
    if p_target is not None:
        if calibration is not None and calibration.scale > 0:
            llr = bayes_threshold(p_target)
            return Threshold((llr - calibration.offset) / calibration.scale,
                             f"calibrated at p_target {p_target:g}: LLR >= {llr:.3f}", llr)
        fallback = ("the run has no score calibration (evaluated before it existed: re-run "
                    "recipes/VoxCeleb/eval.py)" if calibration is None else
                    f"the run's calibration does not grow with the score (scale "
                    f"{calibration.scale:g})")
    if eer_threshold is None:
        return None
    return Threshold(float(eer_threshold), "the EER threshold on the validation trials",
                     fallback=fallback)


class SpeakerVerifier:
    """A speaker embedder plus a same/different threshold and a calibration of its scores."""

    def __init__(self, embedder: torch.nn.Module, threshold: float | None = None,
                 device: str | torch.device = "cpu", calibration: Calibration | None = None):
        check_device(device)  # DeviceError (a ValueError) for a GPU that is not there
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
        threshold, calibration = stored_decision(read_results(out, checkpoint))
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

    def decision_threshold(self, p_target: float | None = DEFAULT_P_TARGET) -> Threshold:
        """:func:`run_threshold` of this run (``p_target`` None: the EER threshold)."""
        found = run_threshold(self.threshold, self.calibration, p_target)
        if found is None:
            raise RunError("no decision threshold: run recipes/VoxCeleb/eval.py on the run "
                           "(it stores the validation EER threshold and the calibration)")
        return found

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
