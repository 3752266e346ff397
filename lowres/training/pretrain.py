"""Self-supervised pre-training of wav2vec2 on unlabelled audio.

The objective is wav2vec 2.0's (Baevski et al. 2020), as transformers'
``Wav2Vec2ForPreTraining`` computes it: spans of the CNN's frames are masked
(``_compute_mask_indices``: ``mask_time_prob`` of the frames start a span of
``mask_time_length``), the transformer's output at each masked frame must pick the
quantised CNN feature of that frame among ``num_negatives`` distractors drawn from the same
utterance (``_sample_negative_indices``; a contrastive loss at temperature
``contrastive_logits_temperature``), plus ``diversity_loss_weight`` times the diversity loss
that keeps the codebooks in use. The Gumbel-softmax temperature of the quantiser decays per
optimiser step from ``max_gumbel_temperature`` by ``gumbel_temperature_decay`` down to
``min_gumbel_temperature`` (fairseq's and transformers' example values 2, 0.5, 0.999995).
As in transformers' pre-training example, the loss is divided by the number of masked
frames, and negatives are drawn from an utterance's valid (unpadded) frames.

This follows SpeechBrain's ``Wav2Vec2Pretrain`` (speechbrain.integrations.huggingface) and
its CommonVoice recipe (``train_hf_wav2vec2.py``): the HuggingFace model trained by a
``Brain`` with masks and negatives drawn outside it. Differences: each crop is normalised
on its own (SpeechBrain layer-norms the whole padded batch as one tensor), masks cover valid
frames only, and the model starts from a local config or folder (no hub download).

Each crop is normalised to zero mean and unit variance, as the fine-tuning embedder
normalises (lowres.models.wav2vec2); group-norm CNNs get zero-padded input without an
attention mask, as there (transformers' guidance).

The masks and negatives come from numpy's global generator (transformers' helpers), which
the run's RngState checkpoints, so a resumed run draws the same ones as an uninterrupted
run. Validation (when ``valid_audio`` is set) draws them, and torch's random draws, from a
fixed seed, so the validation loss of two steps compares the same task.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from transformers import Wav2Vec2ForPreTraining, Wav2Vec2Model
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    _compute_mask_indices,
    _sample_negative_indices,
)

from lowres.io.atomic import atomic_folder
from lowres.io.hparams import HparamsError, invalid_hparam
from lowres.io.outputs import check_output_folder
from lowres.models.features import valid_samples
from lowres.models.wav2vec2 import normalise_waveform, prepare_backbone
from lowres.training.runs import (
    PRECISIONS,
    ResumableBrain,
    unwrap,
)
from lowres.training.schedules import SCHEDULES

logger = logging.getLogger(__name__)

RANDOM_STARTS = ("tiny", "base")  # lowres.models.tiny_wav2vec2.wav2vec2_config sizes
VALID_MASK_SEED = 20201016  # validation masks and negatives: the same draw every time


@contextlib.contextmanager
def numpy_seeded(seed: int):
    """numpy's global generator seeded with ``seed`` inside, restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class Wav2vec2Pretraining(torch.nn.Module):
    """``Wav2Vec2ForPreTraining`` + masking and negative sampling: forward(wavs, lens) ->
    dict of the per-masked-frame ``loss`` (contrastive + weighted diversity), its parts,
    the codebook ``perplexity`` and the number of ``masked`` frames.

    ``source``: ``tiny`` / ``base`` (a random model of lowres.models.tiny_wav2vec2's
    architecture with the codebook given here) or a folder saved by ``save_pretrained``
    (continue pre-training; its architecture and codebook are the folder's; a bare
    ``Wav2Vec2Model`` folder gets a new random quantiser and projections, logged).
    """

    def __init__(self, source: str = "tiny", num_codevector_groups: int = 2,
                 num_codevectors_per_group: int = 320, codevector_dim: int = 256,
                 proj_codevector_dim: int = 256, num_negatives: int = 100,
                 contrastive_logits_temperature: float = 0.1,
                 diversity_loss_weight: float = 0.1, mask_time_prob: float = 0.65,
                 mask_time_length: int = 10, mask_time_min_masks: int = 2,
                 max_gumbel_temperature: float = 2.0, min_gumbel_temperature: float = 0.5,
                 gumbel_temperature_decay: float = 0.999995,
                 freeze_feature_encoder: bool = False, gradient_checkpointing: bool = False,
                 cross_utterance_negatives: int = 0, layerdrop: float = 0.0):
        super().__init__()
        self.source = str(source)
        if self.source in RANDOM_STARTS:
            from lowres.models.tiny_wav2vec2 import wav2vec2_config

            config = wav2vec2_config(self.source)
            config.update({"num_codevector_groups": int(num_codevector_groups),
                           "num_codevectors_per_group": int(num_codevectors_per_group),
                           "codevector_dim": int(codevector_dim),
                           "proj_codevector_dim": int(proj_codevector_dim)})
            self.model = Wav2Vec2ForPreTraining(config)
        else:
            folder = checkpoint_folder(self.source)
            self.model, info = Wav2Vec2ForPreTraining.from_pretrained(
                folder, output_loading_info=True)
            backbone = [k for k in info["missing_keys"] if k.startswith("wav2vec2.")]
            if backbone:
                raise HparamsError(f"model_source={self.source!r}: the checkpoint lacks "
                                   f"{len(backbone)} backbone weights, e.g. {backbone[:3]}")
            if info["missing_keys"]:
                logger.warning("model_source %s has no %s: they start at random", folder,
                               ", ".join(sorted({k.split(".")[0] for k in info["missing_keys"]})))
        # objective settings, written into the config where transformers reads them; the
        # fine-tuning regularisation (config.mask_time_prob ...) stays the checkpoint's
        self.model.config.update({"contrastive_logits_temperature":
                                  float(contrastive_logits_temperature),
                                  "diversity_loss_weight": float(diversity_loss_weight),
                                  "layerdrop": float(layerdrop)})
        if not self.model.config.apply_spec_augment:
            raise HparamsError(f"model_source={self.source!r}: its config has "
                               "apply_spec_augment false, so no frame would be masked")
        self.mask_time_prob, self.mask_time_length = float(mask_time_prob), int(mask_time_length)
        self.mask_time_min_masks = int(mask_time_min_masks)
        self.num_negatives = int(num_negatives)
        self.cross_utterance_negatives = int(cross_utterance_negatives)
        if not 0 <= self.cross_utterance_negatives <= self.num_negatives:
            raise invalid_hparam("cross_utterance_negatives", cross_utterance_negatives,
                                 f"0..num_negatives ({self.num_negatives})")
        self.gumbel = (float(max_gumbel_temperature), float(min_gumbel_temperature),
                       float(gumbel_temperature_decay))
        self.use_attention_mask = prepare_backbone(self.model.wav2vec2, freeze_feature_encoder,
                                                    gradient_checkpointing)

    def set_step(self, step: int) -> None:
        """The quantiser's Gumbel temperature at optimiser step ``step``."""
        high, low, decay = self.gumbel
        self.model.set_gumbel_temperature(max(high * decay ** step, low))

    def forward(self, wavs: torch.Tensor, lens: torch.Tensor | None = None) -> dict:
        x, mask, valid, masked = masked_input(self.model.wav2vec2, wavs, lens,
                                              self.mask_time_prob, self.mask_time_length,
                                              self.mask_time_min_masks)
        negatives = sample_negatives(valid.numpy(), self.num_negatives,
                                     self.cross_utterance_negatives)
        n_masked = int(masked.sum())
        out = self.model(x, attention_mask=mask.long() if self.use_attention_mask else None,
                         mask_time_indices=torch.from_numpy(masked).to(wavs.device),
                         sampled_negative_indices=torch.from_numpy(negatives).to(wavs.device))
        n = max(n_masked, 1)
        return {"loss": out.loss / n, "contrastive": out.contrastive_loss.detach() / n,
                "diversity": out.diversity_loss.detach() / n,
                "perplexity": out.codevector_perplexity.detach(), "masked": n_masked}

    def save_pretrained(self, folder: str | Path) -> Path:
        """The model in the hub layout of facebook/wav2vec2-base (Wav2Vec2ForPreTraining:
        config.json + model.safetensors), which train.py loads as ``wav2vec2_source``;
        written atomically (the folder is replaced whole)."""
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.model.save_pretrained(tmp)
        return folder


def checkpoint_folder(source: str) -> Path:
    """``model_source`` as a save_pretrained folder, or the HparamsError naming it."""
    if not (Path(source) / "config.json").is_file():
        raise invalid_hparam("model_source", source, f"neither {' nor '.join(RANDOM_STARTS)} "
                             "nor a folder with a config.json (a save_pretrained checkpoint)")
    return Path(source)


def bare_backbone(source: str, layerdrop: float = 0.0) -> Wav2Vec2Model:
    """The ``Wav2Vec2Model`` an objective trains: random weights of a RANDOM_STARTS size,
    or every backbone weight of a save_pretrained folder (HparamsError naming it); its
    ``layerdrop`` the given one, not the config's (0.1 in transformers' default), as
    pretrain.yaml's layerdrop explains."""
    if source in RANDOM_STARTS:
        from lowres.models.tiny_wav2vec2 import wav2vec2_config

        config = wav2vec2_config(source)
        config.layerdrop = float(layerdrop)
        return Wav2Vec2Model(config)
    from lowres.models.wav2vec2 import load_backbone

    folder = checkpoint_folder(source)
    config = Wav2Vec2Model.config_class.from_pretrained(folder)
    config.layerdrop = float(layerdrop)
    return load_backbone(Wav2Vec2Model, str(folder), config, config)


def save_backbone(w2v: Wav2Vec2Model, folder: str | Path) -> Path:
    """``w2v`` as a bare ``Wav2Vec2Model`` folder (config.json + model.safetensors), which
    train.py loads as ``wav2vec2_source``; written atomically (the folder is replaced whole)."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        w2v.save_pretrained(tmp)
    return folder


def masked_input(w2v, wavs: torch.Tensor, lens: torch.Tensor | None, mask_time_prob: float,
                 mask_time_length: int, mask_time_min_masks: int):
    """What both objectives feed the backbone ``w2v``: the crops normalised each on its own
    (as the fine-tuning embedder does), their valid-sample mask, the valid CNN frames
    ([B, frames] bool, on the CPU) and wav2vec 2.0's span mask over those frames (numpy
    bool, drawn from numpy's global generator by ``_compute_mask_indices``)."""
    if lens is None:
        lens = torch.ones(wavs.shape[0], device=wavs.device)
    n_valid = valid_samples(lens, wavs.shape[1]).to(wavs.device)
    x, mask = normalise_waveform(wavs.float(), n_valid)
    frames = torch.as_tensor(w2v._get_feat_extract_output_lengths(n_valid)).long()
    length = int(w2v._get_feat_extract_output_lengths(wavs.shape[1]))
    valid = (torch.arange(length, device=wavs.device)[None] < frames[:, None]).cpu()
    masked = _compute_mask_indices((len(wavs), length), mask_time_prob, mask_time_length,
                                   attention_mask=valid.long(), min_masks=mask_time_min_masks)
    return x, mask, valid, masked


def sample_negatives(valid: np.ndarray, num_negatives: int, cross: int = 0) -> np.ndarray:
    """Flat (batch x frame) indices of ``num_negatives`` distractors per frame: wav2vec
    2.0's from the same utterance (transformers' ``_sample_negative_indices``), of which
    the last ``cross`` come from the valid frames of the batch's other crops instead.

    Within one crop speaker and channel are constant, so same-utterance distractors never
    reward encoding them; distractors from other crops (CPC's mixed-speaker negatives, van
    den Oord et al. 2018) do. A batch of one crop draws all of them within it."""
    batch, length = valid.shape
    cross = cross if batch > 1 else 0
    within = _sample_negative_indices((batch, length), num_negatives - cross,
                                      mask_time_indices=valid)
    if not cross:
        return within
    flat = np.flatnonzero(valid)
    owner = flat // length
    out = np.zeros((batch, length, cross), dtype=np.int32)
    for b in range(batch):
        others = flat[owner != b]
        out[b] = others[np.random.randint(0, len(others), size=(length, cross))]
    return np.concatenate([within, out], axis=-1)


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


class Stats:
    """Means of the objective's scalars (every key of its output but the count of
    ``masked`` frames) over the batches seen since the last reset."""

    def __init__(self):
        self.sums, self.batches = {}, 0

    def add(self, out: dict) -> None:
        for key, value in out.items():
            if key != "masked":
                self.sums[key] = self.sums.get(key, 0.0) + float(torch.as_tensor(value).detach())
        self.batches += 1

    def summary(self) -> dict:
        if not self.batches:
            return {}
        return {k: round(v / self.batches, 4) for k, v in self.sums.items()}


class PretrainBrain(ResumableBrain):
    """Pre-training on SpeechBrain's Brain: a step budget cut into stretches
    (lowres.data.loading.training_schedule), a checkpoint (and the validation loss, with
    ``valid_audio``) after each, resumable exactly as train.py's runs."""

    def compute_forward(self, batch, stage):
        wavs, lens = batch.sig
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        if stage == sb.Stage.TRAIN:
            return self.modules.model(wavs, lens)
        seed = VALID_MASK_SEED + self.valid_batch
        self.valid_batch += 1
        with numpy_seeded(seed), torch.random.fork_rng(devices=_cuda_devices(wavs.device)):
            torch.manual_seed(seed)  # torch's draws too (the utterance objective's channels)
            return self.modules.model(wavs, lens)

    def compute_objectives(self, out, batch, stage):
        self.stats.add(out)
        if stage == sb.Stage.TRAIN:
            self.log_stats.add(out)
        return out["loss"]

    def on_stage_start(self, stage, epoch=None):
        self.stats = Stats()
        if stage == sb.Stage.TRAIN:
            self.log_stats = Stats()
        else:
            self.valid_batch = 0

    def on_fit_batch_start(self, batch, should_step):
        unwrap(self.modules.model).set_step(self.optimizer_step)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_summary = self.stats.summary()
            return
        self.valid_summary = self.stats.summary()
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "step": self.optimizer_step,
                        "lr": self.optimizer.param_groups[0]["lr"]},
            train_stats=getattr(self, "train_summary", None) if epoch else None,
            valid_stats=self.valid_summary)

    def _fit_valid(self, valid_set, epoch, enable):
        self.valid_summary = None
        super()._fit_valid(valid_set, epoch, enable)  # nothing without valid_audio
        if epoch == 0:  # the untrained model's validation: logged only
            return
        if self.valid_summary is None:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "step": self.optimizer_step,
                            "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=getattr(self, "train_summary", None))
        loss = (self.valid_summary or {}).get("loss", math.nan)
        meta = {"valid_loss": loss} if math.isfinite(loss) else {}
        self.checkpointer.save_and_keep_only(meta={**meta, "step": self.optimizer_step},
                                             num_to_keep=1, end_of_epoch=True)
        if self.hparams.export_every_interval and if_main_process() \
                and self.optimizer_step < self.hparams.max_steps:
            unwrap(self.modules.model).save_pretrained(
                Path(self.hparams.output_folder) / f"pretrained_step{self.optimizer_step}")


def check_hparams(values: dict, world_size: int) -> None:
    """Raise HparamsError naming the key and value of the first invalid setting (an
    OutputPathError for an output_folder that cannot be written)."""
    check_output_folder(values["output_folder"], "output_folder")
    for key, integer in (("lr", False), ("max_steps", True), ("batch_size", True),
                         ("crop_seconds", False), ("log_interval", True),
                         ("val_interval", True), ("rank_wait_hours", False)):
        v = values.get(key)
        if isinstance(v, bool) or not isinstance(v, (int,) if integer else (int, float)) \
                or not v > 0:
            raise invalid_hparam(key, v, f"must be a positive {'integer' if integer else 'number'}")
    for key, choices in (("lr_schedule", SCHEDULES), ("precision", PRECISIONS)):
        if values.get(key) not in choices:
            raise invalid_hparam(key, values.get(key), f"must be one of {', '.join(choices)}")
    if not 0 < values.get("mask_time_prob", 0) <= 1:
        raise invalid_hparam("mask_time_prob", values.get("mask_time_prob"), "must be in (0, 1]")
    if not 0 <= values.get("layerdrop", 0) < 1:
        raise invalid_hparam("layerdrop", values.get("layerdrop"), "must be in [0, 1)")
    if values.get("layerdrop", 0) > 0 and not values.get("find_unused_parameters"):
        raise invalid_hparam("layerdrop", values.get("layerdrop"),
                             "a skipped layer gets no gradient, which DDP refuses: set "
                             "find_unused_parameters true as well")
    if values["batch_size"] % world_size:
        raise invalid_hparam("batch_size", values["batch_size"],
                             f"the global batch must divide over the {world_size} DDP processes")
    for key in ("export_every_interval", "freeze_feature_encoder", "gradient_checkpointing",
                "fused_optimizer"):
        if not isinstance(values.get(key, False), bool):
            raise invalid_hparam(key, values[key], "must be true or false")
