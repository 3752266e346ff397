"""Utterance-level contrastive pre-training of wav2vec2 (SimCLR on speech).

Each training crop is cut into two halves, two views of one recording: same speaker, same
session. Each view gets its own random channel (:class:`RandomChannel`: a smooth random EQ
curve and white noise at a random SNR) and wav2vec 2.0's span masking, the backbone's last
layer is mean-pooled over the view's valid frames (as the study's fine-tuning pools it),
and a projection head (SimCLR's MLP, dropped when saving) feeds the NT-Xent loss (Chen et
al. 2020; for speakers, Zhang et al. 2021, "Contrastive self-supervised learning for
text-independent speaker verification"): each view must pick its partner among the other
``2 x batch - 2`` views of the batch at temperature ``temperature``.

Why it is here next to the frame-level objectives: a frame-level target (a quantised
frame, an MFCC cluster) is predicted from the same utterance, so nothing rewards encoding
what is constant over the utterance; measured on the synthetic corpus, both fine-tuned
with the study's frozen CNN no better than random weights (README). Here the only thing
two views share beyond the words' surroundings is the voice and the session's channel, and
the random channels make the channel an unreliable cue; the CNN, which the study's recipe
freezes, is trained for it. No labels are used: the negatives are the batch's other
crops, most of them other speakers on a corpus of many speakers.

The random channels and masks come from torch's and numpy's global generators, which the
run's RngState checkpoints, so a resumed run draws what an uninterrupted one would. The
backbone is saved as a bare ``Wav2Vec2Model``, which train.py loads as ``wav2vec2_source``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from speechbrain.augment.time_domain import AddNoise

from lowres.io.audio import SAMPLE_RATE
from lowres.io.hparams import invalid_hparam
from lowres.models.features import valid_samples
from lowres.models.wav2vec2 import prepare_backbone


class RandomChannel(torch.nn.Module):
    """forward(wavs [B, T], lens relative) -> each row through its own random channel: a
    smooth EQ curve (gains of N(0, ``eq_db``) dB at ``eq_points`` log-spaced frequencies
    from 100 Hz to Nyquist, interpolated over log frequency, applied in the frequency
    domain) and white noise at an SNR uniform in [``snr_low``, ``snr_high``] dB
    (SpeechBrain's ``AddNoise``). ``eq_db`` 0 and ``snr_low`` None turn either off."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, eq_db: float = 6.0, eq_points: int = 6,
                 snr_low: float | None = 5.0, snr_high: float = 30.0):
        super().__init__()
        self.sample_rate, self.eq_db, self.eq_points = sample_rate, float(eq_db), int(eq_points)
        self.noise = None if snr_low is None else AddNoise(snr_low=float(snr_low),
                                                           snr_high=float(snr_high))

    def eq(self, wavs: torch.Tensor) -> torch.Tensor:
        n = wavs.shape[1]
        spectrum = torch.fft.rfft(wavs.float(), dim=1)
        freqs = torch.fft.rfftfreq(n, 1 / self.sample_rate, device=wavs.device)
        anchors = torch.linspace(math.log(100.0), math.log(self.sample_rate / 2),
                                 self.eq_points, device=wavs.device)
        gains_db = torch.randn(len(wavs), self.eq_points, device=wavs.device) * self.eq_db
        # position of each frequency between the anchors (linear in log frequency)
        pos = (freqs.clamp(min=100.0).log() - anchors[0]) / (anchors[1] - anchors[0])
        pos = pos.clamp(0, self.eq_points - 1)
        low = pos.floor().long().clamp(max=self.eq_points - 2)
        frac = pos - low
        curve = gains_db[:, low] * (1 - frac) + gains_db[:, low + 1] * frac
        return torch.fft.irfft(spectrum * 10 ** (curve / 20), n=n, dim=1).to(wavs.dtype)

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        if self.eq_db > 0:
            wavs = self.eq(wavs)
        if self.noise is not None:
            wavs = self.noise(wavs, lens)
        mask = torch.arange(wavs.shape[1], device=wavs.device)[None] \
            < valid_samples(lens, wavs.shape[1]).to(wavs.device)[:, None]
        return wavs * mask  # padding stays silent


def halves(wavs: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop's valid samples cut into two halves: [2B, T'] (first halves, then second
    halves) and their relative lengths."""
    n = valid_samples(lens, wavs.shape[1]).cpu()
    half = n // 2
    width = int(half.max())
    views = wavs.new_zeros(2 * len(wavs), width)
    for i, (h, total) in enumerate(zip(half.tolist(), n.tolist(), strict=True)):
        views[i, :h] = wavs[i, :h]
        views[len(wavs) + i, :total - h] = wavs[i, h:total][:width]
    lengths = torch.cat([half, (n - half).clamp(max=width)]).float() / width
    return views, lengths.to(wavs.device)


def nt_xent(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's loss over [2B, D] embeddings whose row i and i + B are a positive pair,
    and the share of views whose nearest other view is their partner."""
    z = torch.nn.functional.normalize(z.float(), dim=1)
    b = len(z) // 2
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), -math.inf)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    loss = torch.nn.functional.cross_entropy(sim, partner)
    return loss, (sim.argmax(1) == partner).float().mean()


class UtteranceContrastive(torch.nn.Module):
    """``Wav2Vec2Model`` + a projection head: forward(wavs, lens) -> dict of the NT-Xent
    ``loss`` of the crops' halves, the ``accuracy`` of finding each view's partner and the
    number of ``masked`` frames. ``source`` as the other objectives' (``tiny`` / ``base``
    or a save_pretrained folder)."""

    def __init__(self, source: str = "tiny", temperature: float = 0.1,
                 projection_dim: int = 128, mask_time_prob: float = 0.2,
                 mask_time_length: int = 10, mask_time_min_masks: int = 0,
                 eq_db: float = 6.0, snr_low: float | None = 5.0, snr_high: float = 30.0,
                 sample_rate: int = SAMPLE_RATE, freeze_feature_encoder: bool = False,
                 gradient_checkpointing: bool = False, layerdrop: float = 0.0):
        super().__init__()
        from lowres.training.pretrain import bare_backbone

        self.source = str(source)
        self.wav2vec2 = bare_backbone(self.source, layerdrop)
        if not float(temperature) > 0:
            raise invalid_hparam("temperature", temperature, "must be positive")
        self.temperature = float(temperature)
        self.mask_time_prob, self.mask_time_length = float(mask_time_prob), int(mask_time_length)
        self.mask_time_min_masks = int(mask_time_min_masks)
        self.channel = RandomChannel(sample_rate, eq_db, snr_low=snr_low, snr_high=snr_high)
        hidden = self.wav2vec2.config.hidden_size
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, int(projection_dim)))
        self.use_attention_mask = prepare_backbone(self.wav2vec2, freeze_feature_encoder,
                                                    gradient_checkpointing)

    def set_step(self, step: int) -> None:
        """Nothing depends on the step (the contrastive objective's Gumbel temperature does)."""

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None) -> dict:
        from lowres.training.pretrain import masked_input

        if lens is None:
            lens = torch.ones(len(wavs), device=wavs.device)
        views, view_lens = halves(wavs, lens)
        views = self.channel(views, view_lens)
        x, mask, valid, masked = masked_input(self.wav2vec2, views, view_lens,
                                              self.mask_time_prob, self.mask_time_length,
                                              self.mask_time_min_masks)
        valid = valid.to(wavs.device)
        masked = torch.from_numpy(masked).to(wavs.device) & valid
        hidden = self.wav2vec2(x, attention_mask=mask.long() if self.use_attention_mask
                               else None, mask_time_indices=masked).last_hidden_state
        weights = valid.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        loss, accuracy = nt_xent(self.projection(pooled), self.temperature)
        return {"loss": loss, "accuracy": accuracy.detach(), "masked": int(masked.sum())}

    def save_pretrained(self, folder: str | Path) -> Path:
        """The backbone as a bare ``Wav2Vec2Model``: what train.py fine-tunes; the head is
        dropped."""
        from lowres.training.pretrain import save_backbone

        return save_backbone(self.wav2vec2, folder)
