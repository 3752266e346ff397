"""HuBERT-style masked prediction for pre-training wav2vec2 (its first iteration).

HuBERT (Hsu et al. 2021), iteration one: every 20 ms frame gets the id of its nearest of
``num_clusters`` k-means centroids of MFCC frames (13 coefficients + deltas + delta-deltas,
fairseq's ``dump_mfcc_feature.py``; k-means with scikit-learn's ``MiniBatchKMeans``, as
fairseq's ``learn_kmeans.py``), spans of the CNN's frames are masked as in wav2vec 2.0
(``_compute_mask_indices``), and the transformer's output at each masked frame must
classify the masked frame's cluster id (cross-entropy over masked frames, HuBERT's
``pred_masked_weight`` 1) plus ``unmasked_weight`` times the cross-entropy of the unmasked
frames' ids (HuBERT's ``pred_nomask_weight``; 0 in the paper, which found it best for ASR),
each averaged over its frames.

Why it is here next to wav2vec 2.0's contrastive objective: a distractor drawn from the
same utterance never rewards encoding the speaker, whereas on a small multi-speaker corpus
MFCC clusters may split by voice as well as by sound, so naming a masked frame's cluster
could need the speaker's voice. The hypothesis, measured on the synthetic corpus (README):
it learns from the first steps, but fine-tuned with the study's frozen CNN it starts no
better than random weights.

The centroids are fitted before training from the first ``kmeans_crops`` crops of the
training audio in a seeded order (``fit_targets``; numpy's global generator untouched, so
the masks of a resumed run stay the same) and are a buffer of the module, so they are
saved in every checkpoint (a resumed run fits them again, the same seeded fit, and then
loads the checkpoint's copy). The backbone is a ``Wav2Vec2Model`` and is saved in that
(bare) layout, which train.py loads as ``wav2vec2_source``; the classifier is dropped, as
HuBERT's released checkpoints drop theirs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torchaudio

from lowres.io.audio import SAMPLE_RATE
from lowres.io.hparams import invalid_hparam
from lowres.models.wav2vec2 import normalise_waveform, prepare_backbone

logger = logging.getLogger(__name__)


class MfccFrames(torch.nn.Module):
    """forward(wavs [B, T] normalised) -> MFCC + deltas + delta-deltas [B, frames, 39] at
    the CNN's frame rate: one frame per ``hop`` samples, centred where the CNN's frame of
    receptive field ``field`` is centred, the last frames repeated where the MFCC runs short.
    """

    def __init__(self, sample_rate: int, hop: int, field: int, n_mfcc: int = 13):
        super().__init__()
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": 400, "win_length": 400, "hop_length": hop, "n_mels": 23})
        self.offset = int(round(field / 2 / hop))  # MFCC frame t is centred at t * hop

    def forward(self, wavs: torch.Tensor, frames: int) -> torch.Tensor:
        # fp32 inside the training autocast: a loud frame's power exceeds fp16's 65504, and
        # top_db would then clamp every frame of the crop to inf
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            c = self.mfcc(wavs.float())  # [B, n_mfcc, T // hop + 1]
            d = torchaudio.functional.compute_deltas(c)
            feats = torch.cat([c, d, torchaudio.functional.compute_deltas(d)], 1)
        feats = feats.transpose(1, 2)
        feats = feats[:, self.offset:self.offset + frames]
        if feats.shape[1] < frames:
            tail = feats[:, -1:].expand(-1, frames - feats.shape[1], -1)
            feats = torch.cat([feats, tail], 1)
        return feats


def _receptive_field(kernels, strides) -> int:
    field, jump = 1, 1
    for k, s in zip(kernels, strides, strict=True):
        field += (k - 1) * jump
        jump *= s
    return field


class MaskedPrediction(torch.nn.Module):
    """``Wav2Vec2Model`` + a linear classifier of masked frames' MFCC cluster ids:
    forward(wavs, lens) -> dict of the ``loss`` (the cross-entropy per masked frame, plus
    ``unmasked_weight`` times that of the unmasked frames), both parts, the ``accuracy``
    of the masked frames' cluster ids and the number of ``masked`` frames.

    ``source``: ``tiny`` / ``base`` (random weights of lowres.models.tiny_wav2vec2's
    architecture) or a ``save_pretrained`` folder whose backbone continues training.
    Call :meth:`fit_targets` once before training.
    """

    def __init__(self, source: str = "tiny", num_clusters: int = 100, kmeans_crops: int = 500,
                 kmeans_seed: int = 0, mask_time_prob: float = 0.65, mask_time_length: int = 10,
                 mask_time_min_masks: int = 2, unmasked_weight: float = 0.0,
                 sample_rate: int = SAMPLE_RATE, freeze_feature_encoder: bool = False,
                 gradient_checkpointing: bool = False, layerdrop: float = 0.0):
        super().__init__()
        from lowres.training.pretrain import bare_backbone

        self.source = str(source)
        self.wav2vec2 = bare_backbone(self.source, layerdrop)
        config = self.wav2vec2.config
        if int(num_clusters) < 2:
            raise invalid_hparam("num_clusters", num_clusters, "at least 2")
        self.num_clusters, self.kmeans_crops = int(num_clusters), int(kmeans_crops)
        self.kmeans_seed = int(kmeans_seed)
        self.mask_time_prob, self.mask_time_length = float(mask_time_prob), int(mask_time_length)
        self.mask_time_min_masks = int(mask_time_min_masks)
        self.unmasked_weight = float(unmasked_weight)
        hop = int(np.prod(config.conv_stride))
        self.targets = MfccFrames(sample_rate, hop,
                                  _receptive_field(config.conv_kernel, config.conv_stride))
        self.register_buffer("centroids", torch.zeros(self.num_clusters, 39))
        self.classifier = torch.nn.Linear(config.hidden_size, self.num_clusters)
        self.use_attention_mask = prepare_backbone(self.wav2vec2, freeze_feature_encoder,
                                                    gradient_checkpointing)

    @torch.no_grad()
    def fit_targets(self, dataset) -> None:
        """k-means centroids of the MFCC frames of up to ``kmeans_crops`` items (``sig``)
        of ``dataset``, taken in an order drawn from ``kmeans_seed``."""
        from sklearn.cluster import MiniBatchKMeans

        order = np.random.default_rng(self.kmeans_seed).permutation(len(dataset))
        feats = []
        for i in order[:self.kmeans_crops]:
            sig = dataset[int(i)]["sig"][None]
            x, _ = normalise_waveform(sig, torch.tensor([sig.shape[1]]))
            n = int(self.wav2vec2._get_feat_extract_output_lengths(sig.shape[1]))
            feats.append(self.targets(x, n)[0])
        feats = torch.cat(feats).numpy()
        if len(feats) < self.num_clusters:
            raise invalid_hparam("num_clusters", self.num_clusters,
                                 f"the {len(order[:self.kmeans_crops])} crops for k-means have "
                                 f"only {len(feats)} frames")
        kmeans = MiniBatchKMeans(self.num_clusters, random_state=self.kmeans_seed,
                                 batch_size=10000, n_init=3, max_iter=100).fit(feats)
        self.centroids.copy_(torch.from_numpy(kmeans.cluster_centers_).float())
        logger.info("k-means targets: %d clusters of %d MFCC frames (inertia %.1f per frame)",
                    self.num_clusters, len(feats), kmeans.inertia_ / len(feats))

    def set_step(self, step: int) -> None:
        """Nothing depends on the step (the contrastive objective's Gumbel temperature does)."""

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None) -> dict:
        from lowres.training.pretrain import masked_input

        x, mask, valid, masked = masked_input(self.wav2vec2, wavs, lens, self.mask_time_prob,
                                              self.mask_time_length, self.mask_time_min_masks)
        valid = valid.to(wavs.device)
        masked = torch.from_numpy(masked).to(wavs.device) & valid
        length = valid.shape[1]
        with torch.no_grad():
            labels = torch.cdist(self.targets(x, length), self.centroids[None]).argmin(-1)
        hidden = self.wav2vec2(x, attention_mask=mask.long() if self.use_attention_mask
                               else None, mask_time_indices=masked).last_hidden_state
        logits = self.classifier(hidden[masked]).float()
        n_masked = int(masked.sum())
        n = max(n_masked, 1)
        loss = torch.nn.functional.cross_entropy(logits, labels[masked], reduction="sum") / n
        accuracy = (logits.argmax(-1) == labels[masked]).float().sum() / n
        out = {"masked_loss": loss.detach(), "accuracy": accuracy, "masked": n_masked}
        if self.unmasked_weight:
            kept = valid & ~masked
            unmasked = torch.nn.functional.cross_entropy(
                self.classifier(hidden[kept]).float(), labels[kept], reduction="sum")
            unmasked = unmasked / max(int(kept.sum()), 1)
            loss = loss + self.unmasked_weight * unmasked
            out["unmasked_loss"] = unmasked.detach()
        return {"loss": loss, **out}

    def save_pretrained(self, folder: str | Path) -> Path:
        """The backbone as a bare ``Wav2Vec2Model``: what train.py fine-tunes; the head is
        dropped."""
        from lowres.training.pretrain import save_backbone

        return save_backbone(self.wav2vec2, folder)
