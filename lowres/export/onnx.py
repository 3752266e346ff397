"""A run's embedder with its front-end as one ONNX graph: waveform in, embedding out.

    python -m lowres.export RUN --onnx DIR/embedding_model.onnx

Input ``waveform`` float32 ``[batch, samples]`` (16 kHz mono; batch and length dynamic),
output ``embedding`` float32 ``[batch, D]``. Every utterance of a batch is taken whole, so
batch utterances of equal length (or one at a time): that is how lowres embeds them too
(``MfccEmbedder`` runs each length alone, wav2vec2 sees any padding).

What differs from the PyTorch modules, for the exporter's sake:

- MFCC models: ``torch.stft`` (complex-valued, which the ONNX exporters do not take) is
  replaced by its definition, a strided convolution with the windowed DFT basis over the
  zero-padded signal; the filterbank, DCT, normalisation and TDNN are lowres's own modules.
  The TDNN is called without lengths (its statistics then use the vectorised path, the same
  numbers as with all-ones lengths).
- wav2vec2: the embedder itself, with all-ones lengths (any ``ssl_pooling``, MHFA included,
  and an ``ssl_backend``; the SpeechBrain folder takes only the study's last-layer mean), and
  any ``ssl_adaptation``: LoRA folded into the weights it adapts
  (:func:`lowres.models.ssl_adaptation.merge_adaptation`), bottleneck adapters as they run
  (their forward hooks are traced).

The written file is checked with onnxruntime against the PyTorch embedder on utterances of
several lengths (and a batch): the largest difference must be at most 1e-3, else nothing is
kept. Exported with the TorchScript-based exporter (``dynamo=False``) at opset 17.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from pathlib import Path

import torch

from lowres.export.run import ExportError, RunForExport, family_of, load_run
from lowres.io.audio import SAMPLE_RATE

__all__ = ["ONNX_TOLERANCE", "OPSET", "export_onnx", "exportable_embedder", "onnx_embed",
           "onnx_session", "write_onnx"]

ONNX_TOLERANCE = 1e-3
OPSET = 17
CHECK_SECONDS = (0.7, 2.0, 4.3)


class DftPowerSpectrum(torch.nn.Module):
    """``|STFT|^2`` of a centred, zero-padded STFT as a convolution: [B, T] -> [B, frames, F].

    Same frames and values as SpeechBrain's ``STFT`` (``center=True``, ``pad_mode=constant``)
    followed by ``spectral_magnitude(power=1)``.
    """

    def __init__(self, window: torch.Tensor, n_fft: int, hop_length: int):
        super().__init__()
        win = window.shape[0]
        full = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win) // 2  # torch.stft centres a shorter window in the frame
        full[left:left + win] = window.double()
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None]
        angle = 2 * math.pi * k * n / n_fft
        basis = torch.cat([torch.cos(angle) * full, -torch.sin(angle) * full])
        self.register_buffer("basis", basis[:, None].float(), persistent=False)
        self.n_fft, self.hop_length, self.n_bins = n_fft, hop_length, n_fft // 2 + 1

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        x = torch.nn.functional.pad(wavs[:, None], (half, half))
        spec = torch.nn.functional.conv1d(x, self.basis, stride=self.hop_length)
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins:]
        return (re.square() + im.square()).transpose(1, 2)


class OnnxMfccEmbedder(torch.nn.Module):
    """lowres's MfccEmbedder (eval) on whole utterances, with the STFT as a convolution."""

    def __init__(self, embedder: torch.nn.Module):
        super().__init__()
        frontend = embedder.frontend
        stft = frontend.stft
        self.power = DftPowerSpectrum(stft.window, stft.n_fft, stft.hop_length)
        self.filterbank, self.dct, self.norm = frontend.filterbank, frontend.dct, frontend.norm
        self.backbone = embedder.backbone

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        feats = self.dct(self.filterbank(self.power(wavs)))
        feats = self.norm(feats, torch.ones_like(feats[..., 0], dtype=torch.bool))
        out = self.backbone(feats)
        return out.reshape(out.shape[0], -1)


class OnnxWav2vec2Embedder(torch.nn.Module):
    """lowres's Wav2vec2Embedder (eval) on whole utterances; a LoRA run's with LoRA folded
    into the backbone's weights (a copy), so its graph is a plain backbone's."""

    def __init__(self, embedder: torch.nn.Module):
        super().__init__()
        if embedder.adaptation == "lora":
            from lowres.models.ssl_adaptation import merge_adaptation

            backbone = merge_adaptation(embedder)
            embedder = copy.deepcopy(embedder)
            embedder.wav2vec2 = backbone
        self.embedder = embedder

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        return self.embedder(wavs, torch.ones_like(wavs[:, 0]))


def exportable_embedder(embedder: torch.nn.Module) -> torch.nn.Module:
    """A lowres embedder as a module of one input (waveforms) the exporter can trace."""
    wrapper = OnnxWav2vec2Embedder if family_of(embedder) == "wav2vec2" else OnnxMfccEmbedder
    return wrapper(embedder).eval()


def write_onnx(module: torch.nn.Module, path: str | os.PathLike, seconds: float = 2.0) -> None:
    """Trace ``module`` (one waveform input) to ``path`` with dynamic batch and length."""
    example = torch.randn(1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        # tracer notes on shape arithmetic; check_onnx tests other lengths and batch sizes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), input_names=["waveform"],
            output_names=["embedding"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}},
        )


def onnx_embed(session, wavs: torch.Tensor) -> torch.Tensor:
    """Embeddings of ``wavs`` [B, T] from an onnxruntime session."""
    (out,) = session.run(["embedding"], {"waveform": wavs.numpy()})
    return torch.from_numpy(out)


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session on ``path`` (``threads``: intra-op threads, default: all)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_onnx(run: RunForExport, path: Path) -> float:
    """Largest difference of onnxruntime on ``path`` from lowres's embedder; raises past 1e-3."""
    session = onnx_session(path)
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for i, seconds in enumerate(CHECK_SECONDS):
        batch = 2 if i == len(CHECK_SECONDS) - 1 else 1
        wavs = 0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=gen)
        ours = run.embedder(wavs, torch.ones(batch))
        worst = max(worst, float((onnx_embed(session, wavs) - ours).abs().max()))
    if not worst <= ONNX_TOLERANCE:
        raise ExportError(f"the ONNX {run.family} embedder differs from PyTorch by {worst:.3g} "
                          f"(> {ONNX_TOLERANCE}); nothing written")
    return worst


def export_onnx(run_folder: str | os.PathLike, path: str | os.PathLike,
                checkpoint: str = "best") -> tuple[Path, float]:
    """Write the run's embedder as ONNX to ``path`` (atomically); returns it and the check."""
    from lowres.io.atomic import atomic_path

    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"--onnx {path}: the file name should end in .onnx")
    run = load_run(run_folder, checkpoint)
    with atomic_path(path) as tmp:
        write_onnx(exportable_embedder(run.embedder), tmp)
        worst = check_onnx(run, tmp)
    return path, worst
