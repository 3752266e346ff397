"""train.py's Brain: embedder -> cosine classifier -> AAM softmax, validated by the EER of
the validation trials (SpeechBrain's SpeakerBrain of recipes/VoxCeleb/SpeakerRec, on
:class:`~lowres.training.runs.ResumableBrain`'s step budget and exact resume).

The best validation's checkpoint (min ``val_eer``) and the last one are kept for testing; a
run whose loss stays non-finite stops with :class:`Diverged` and is recorded as diverged
(:meth:`SpeakerBrain.fit_unless_diverged`), so its evaluation still runs and says so.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from lowres.io.run_folder import diverged_path, mark_diverged, read_diverged, write_parameters
from lowres.models.freeze import apply_freeze_schedule, backbone_frozen_at
from lowres.models.ssl_adaptation import lr_groups, parameter_counts
from lowres.scoring.metrics import eer
from lowres.scoring.trials import score_trials
from lowres.training.parent_run import load_parent
from lowres.training.runs import ResumableBrain, unwrap

logger = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """Training stopped: its loss stayed non-finite."""


class RunningStats:
    """Mean loss and accuracy over the batches seen since the last reset."""

    def __init__(self) -> None:
        self.loss_sum, self.correct, self.count, self.batches = 0.0, 0, 0, 0

    def add(self, loss: float, correct: int, n: int) -> None:
        self.loss_sum += loss
        self.correct += correct
        self.count += n
        self.batches += 1

    def summary(self) -> dict:
        if not self.batches:
            return {}
        return {"loss": round(self.loss_sum / self.batches, 4),
                "acc": round(self.correct / self.count, 4)}


class SpeakerBrain(ResumableBrain):
    """Embedder -> cosine classifier -> AAM softmax; validation EER on the val trials."""

    input_normalised = False  # make_loaders: the data normalise the crops (utterance mode)
    device_augment = None  # make_loaders: augment_side device's CropAugment.augment_batch
    tensorboard = None  # open_trackers: SpeechBrain's TensorboardLogger when the yaml turns it on
    wandb = None  # open_trackers: SpeechBrain's WandBLogger when the yaml turns it on

    def compute_forward(self, batch, stage):
        wavs, lens = batch.sig
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        if stage == sb.Stage.TRAIN and self.device_augment is not None:
            wavs = self.device_augment(wavs, lens, batch)  # the loader's draws, applied here
        embedder = self.modules.embedder
        # utterance normalisation: the data normalised each crop with its file's statistics
        kwargs = {"normalised": True} if self.input_normalised else {}
        if stage != sb.Stage.TRAIN and not unwrap(embedder).padding_invariant:
            return _one_at_a_time(embedder, wavs, lens, **kwargs)
        return embedder(wavs, lens, **kwargs)

    def compute_objectives(self, embeddings, batch, stage):
        labels = batch.spk_id_encoded.data.to(self.device)
        logits = self.modules.classifier(embeddings.unsqueeze(1)).float()
        loss = self.hparams.loss(logits, labels)
        correct = (logits.squeeze(1).argmax(-1) == labels.squeeze(1)).sum().item()
        self.stats.add(loss.item(), correct, len(labels))
        if stage == sb.Stage.TRAIN:
            self.log_stats.add(loss.item(), correct, len(labels))
        else:
            for utt, emb in zip(batch.id, embeddings.detach().float().cpu(), strict=True):
                self.val_embeddings[utt] = emb
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.stats = RunningStats()
        if stage == sb.Stage.TRAIN:
            self.log_stats = RunningStats()
        else:
            self.val_embeddings = {}

    def lr_groups(self):
        """With ``ssl_adaptation_lr``: the backbone's trainable weights in a group of their
        own at that LR (lowres.models.ssl_adaptation.lr_groups)."""
        h = self.hparams
        return lr_groups(self.modules, h.embedder, h.lr, getattr(h, "ssl_adaptation_lr", None))

    def on_fit_start(self):
        self.record_parameters()
        super().on_fit_start()

    def record_parameters(self) -> None:
        """Log and write (parameters.json) how many of the model's parameters train: a
        backbone the freeze schedule keeps frozen for the whole run does not count."""
        h = self.hparams
        backbone_trains = not (hasattr(h, "wav2vec_initially_frozen") and backbone_frozen_at(
            h.max_steps - 1, h.wav2vec_initially_frozen, h.num_frozen_steps))
        counts = parameter_counts(self.modules, h.embedder, backbone_trains)
        adaptation = getattr(h, "ssl_adaptation", None)
        if if_main_process():
            logger.info("model (embedder + classifier): %s of %s parameters train (%.1f %%%s)",
                        f"{counts['trainable']:,}", f"{counts['total']:,}",
                        100 * counts["trainable"] / counts["total"],
                        f"; ssl_adaptation {adaptation}" if adaptation else "")
            write_parameters(h.output_folder, counts["trainable"], counts["total"], adaptation)

    def on_fit_batch_start(self, batch, should_step):
        if hasattr(self.hparams, "wav2vec_initially_frozen"):
            h = self.hparams
            # as published: a frozen backbone in train mode once a validation of the
            # training ran, i.e. from the second interval on (lowres.models.freeze)
            apply_freeze_schedule(unwrap(self.modules.embedder), self.optimizer_step,
                                  h.wav2vec_initially_frozen, h.num_frozen_steps,
                                  train_mode=h.frozen_backbone_as_published
                                  and h.epoch_counter.current > 1)

    def log_train(self, step, lr, stats):
        super().log_train(step, lr, stats)
        self.track(step, {"lr": lr, **{f"train/{k}": v for k, v in stats.items()}})

    def track(self, step: int, scalars: dict) -> None:
        """``scalars`` at optimiser step ``step`` to TensorBoard and W&B, if on (main process)."""
        writer = getattr(self.tensorboard, "writer", None)
        if writer is not None:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
            writer.flush()
        run = getattr(self.wandb, "run", None)
        if run is not None:  # by optimiser step: WandBLogger.log_stats would use the epoch
            run.log(scalars, step=step)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_summary = self.stats.summary()
            return
        # --debug embeds a few batches: score the trials of those files only (logged)
        scores, labels = score_trials(self.val_embeddings, self.val_trials, "validation",
                                      only_embedded=self.debug)
        val_eer = eer(scores, labels).eer if np.isfinite(scores).all() else math.nan
        lr = self.optimizer.param_groups[0]["lr"]
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "step": self.optimizer_step, "lr": lr},
            train_stats=getattr(self, "train_summary", None) if epoch else None,
            valid_stats={**self.stats.summary(), "EER%": round(100 * val_eer, 3)},
        )
        self.track(self.optimizer_step, {
            f"valid/{k}": v for k, v in {**self.stats.summary(), "EER%": 100 * val_eer}.items()})
        if epoch == 0:  # the untrained model: logged, never a candidate for testing
            return
        # a non-finite EER is no candidate for "best" either (no val_eer in the meta)
        meta = {"val_eer": val_eer} if math.isfinite(val_eer) else {}
        self.checkpointer.save_and_keep_only(
            meta={**meta, "step": self.optimizer_step},
            min_keys=["val_eer"], num_to_keep=self.keep, end_of_epoch=True,
        )

    def _fit_valid(self, valid_set, epoch, enable):
        if epoch == 0 or self.schedule.validate[epoch - 1]:
            return super()._fit_valid(valid_set, epoch, enable)
        # val_schedule pass: the last stretch ends at max_steps without a validation
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "step": self.optimizer_step,
                        "lr": self.optimizer.param_groups[0]["lr"]},
            train_stats=getattr(self, "train_summary", None))
        self.save_last()

    def check_loss_isfinite(self, loss):
        try:
            super().check_loss_isfinite(loss)
        except ValueError as err:  # SpeechBrain: non-finite loss, patience exhausted
            raise Diverged(f"the loss was not finite {self.nonfinite_count} times since the "
                           f"last validation (nonfinite_patience {self.nonfinite_patience})"
                           ) from err

    @property
    def keep(self) -> int:
        """Latest and best checkpoints kept: average_checkpoints of each when averaging."""
        return max(1, self.hparams.average_checkpoints)

    def save_last(self) -> None:
        """A checkpoint of the current weights that is no candidate for "best" (no val_eer)."""
        self.checkpointer.save_and_keep_only(meta={"step": self.optimizer_step},
                                             min_keys=["val_eer"], num_to_keep=self.keep,
                                             end_of_epoch=True)

    def on_fresh_start(self):
        if self.hparams.init_from_run:  # a fine-tuning stage starts from its parent
            ckpt = load_parent(self.hparams.init_from_run,
                               {"embedder": self.hparams.embedder,
                                "classifier": self.hparams.classifier})
            self.hparams.train_logger.log_stats(stats_meta={
                "init_from_run": self.hparams.init_from_run, "checkpoint": ckpt.path.name})
        super().on_fresh_start()

    def fit_unless_diverged(self, train_loader) -> None:
        """``fit`` over the step budget, unless an earlier try of this run diverged (it is
        not trained again: delete ``diverged.json`` to retry). When the loss diverges now,
        the weights it ended with become the "last" checkpoint and the run is marked
        diverged, so the evaluation after training still runs and says so."""
        out = Path(self.hparams.output_folder)
        diverged = read_diverged(out)
        if diverged:
            logger.warning("training diverged at step %s (%s; %s): not training again (delete "
                           "that file to retry)", diverged["step"], diverged["reason"],
                           diverged_path(out))
            return
        try:
            self.fit(self.hparams.epoch_counter, train_loader, self.valid_loader)
        except Diverged as err:
            logger.error("training diverged at step %d: %s", self.optimizer_step, err)
            self.save_last()  # the evaluation marks them as the diverged weights
            if if_main_process():
                mark_diverged(out, self.optimizer_step, str(err))


def _one_at_a_time(embedder, wavs: torch.Tensor, lens: torch.Tensor, **kwargs) -> torch.Tensor:
    """Embeddings of a padded batch, one file at a time, for padding-sensitive models."""
    if bool((lens >= 1).all()):
        return embedder(wavs, lens, **kwargs)
    out = []
    for wav, rel in zip(wavs, lens, strict=True):
        n = int(round(float(rel) * wavs.shape[1]))
        out.append(embedder(wav[None, :n], torch.ones(1, device=wavs.device), **kwargs))
    return torch.cat(out)
