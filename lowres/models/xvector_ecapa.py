"""Speaker embedders on MFCCs: SpeechBrain's ``Xvector`` or ``ECAPA_TDNN`` behind the front-end.

``MfccEmbedder(frontend, backbone)`` maps waveforms to embeddings:
forward(wavs [B, T] 16 kHz, lens [B] relative lengths) -> [B, D].

Padding: the front-end's valid frames do not depend on padding (see lowres.models.features), but
SpeechBrain's TDNN convolutions pad with reflection at the end of the whole tensor, so a
zero-padded utterance in a batch would see different context at its end than the same
utterance alone. In eval mode the embedder therefore runs the network once per distinct
valid length in the batch, on exactly that many frames (utterances of equal length still
share one call); in train mode (equal-length 2 s crops) it is one plain batched call with
relative frame lengths. Hence ``padding_invariant = True``: a batch gives the same
embeddings as one utterance at a time.

Determinism: SpeechBrain's ``StatisticsPooling`` (used by ``Xvector``) adds random noise of
1e-5..9e-5 to the pooled mean in every mode, which makes eval embeddings differ run to run
and draws from the global RNG during validation. The embedder swaps it for a subclass that
adds the noise's expected value (5e-5) instead when not training.
"""

from __future__ import annotations

import torch
from speechbrain.nnet.pooling import StatisticsPooling

from lowres.models.features import MfccFrontend


class EvalDeterministicStatisticsPooling(StatisticsPooling):
    """StatisticsPooling whose mean offset is random in training only (5e-5 in eval)."""

    def _get_gauss_noise(self, shape_of_tensor, device="cpu"):
        if self.training:
            return super()._get_gauss_noise(shape_of_tensor, device=device)
        return torch.full(shape_of_tensor, 5 * self.eps, device=device)


def make_eval_deterministic(backbone: torch.nn.Module) -> torch.nn.Module:
    """Swap every plain ``StatisticsPooling`` in ``backbone`` for the eval-deterministic one."""
    for module in backbone.modules():
        if type(module) is StatisticsPooling:
            module.__class__ = EvalDeterministicStatisticsPooling
    return backbone


def embedding_dim_of(backbone: torch.nn.Module) -> int | None:
    """Output size of the last linear / 1-d conv layer (Xvector: 512, ECAPA_TDNN: 192)."""
    last = None
    for module in backbone.modules():
        if isinstance(module, torch.nn.Linear):
            last = module.out_features
        elif isinstance(module, torch.nn.Conv1d):
            last = module.out_channels
    return last


class MfccEmbedder(torch.nn.Module):
    """MFCC front-end + TDNN backbone (SpeechBrain ``Xvector`` or ``ECAPA_TDNN``) -> [B, D]."""

    padding_invariant = True

    def __init__(self, frontend: MfccFrontend, backbone: torch.nn.Module):
        super().__init__()
        self.frontend = frontend
        self.backbone = make_eval_deterministic(backbone)
        self.embedding_dim = embedding_dim_of(backbone)

    def _network(self, feats: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        out = self.backbone(feats, frame_lens)  # Xvector(x, lens) / ECAPA_TDNN(x, lengths)
        return out.reshape(out.shape[0], -1)  # [B, 1, D] -> [B, D]

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        if lens is None:
            lens = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.frontend(wavs, lens)
        frame_lens = self.frontend.frame_lens(lens, wavs.shape[1]).to(feats.device)
        if self.training:
            return self._network(feats, frame_lens)

        frames = torch.round(frame_lens * feats.shape[1]).long()
        out = None
        for n in torch.unique(frames).tolist():
            idx = torch.nonzero(frames == n).squeeze(1)
            emb = self._network(feats[idx, :n], torch.ones(len(idx), device=feats.device))
            if out is None:
                out = emb.new_empty(wavs.shape[0], emb.shape[1])
            out[idx] = emb
        return out
