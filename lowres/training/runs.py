"""What every recipe script on SpeechBrain's ``Brain`` shares (train.py, pretrain.py).

- Exact resume: :class:`RngState` (python, numpy, torch, CUDA generators) and
  :class:`CompleteMarker` (saved last), so :func:`remove_incomplete_checkpoints` can drop a
  checkpoint a SIGKILL cut short before SpeechBrain's checkpointer recovers the latest one.
- A recipe's start: :func:`parse_recipe_args` (SpeechBrain's command line, its ``--device``
  checked, the DDP group),
  the run options of the hparams (:func:`effective_precision`, :func:`with_valid_precision`,
  :func:`precision_run_opts`, :func:`compile_run_opts`) and :func:`start_run` (the run
  folder with its record, :func:`record_run`: resolved ``hyperparams.yaml``,
  ``command.txt``).
- :class:`ResumableBrain`: the ``Brain`` both recipes subclass, which wires those into every
  checkpoint (with the LR scheduler; optional parameter groups with their own learning rates,
  :meth:`ResumableBrain.lr_groups`), reads torch files weights-only, wraps DDP on CPU,
  counts a non-finite loss alike on every DDP process, validates a fresh run at step 0 and
  turns Ctrl-C into :class:`RunInterrupted`, which says where the run resumes.
- :func:`optimizer_class` (``fused_optimizer``), :func:`wrap_cpu_ddp` (DDP on CPU / gloo),
  :func:`progress_description` (step, loss and lr on the progress bar) and :func:`unwrap`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import math
import os
import random
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import yaml
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from tqdm import tqdm

from lowres.io.device import check_device
from lowres.io.hparams import (
    ResolvedHparams,
    invalid_hparam,
    overrides_dict,
)
from lowres.io.run_folder import rank_rng_path, write_record
from lowres.io.tensor_files import load_tensors, use_safe_recovery
from lowres.scoring.eval_settings import precision_on
from lowres.training.ranks import all_ranks_finite, rank, reseed_rank
from lowres.training.schedules import build_lr_scheduler

logger = logging.getLogger(__name__)

COMPLETE = "complete"  # recoverable name of the CompleteMarker (complete.ckpt)
PRECISIONS = ("fp16", "bf16", "fp32")  # training precisions (SpeechBrain's --precision)
# precisions of the validations during training (hparam valid_precision, with_valid_precision)
VALID_PRECISIONS = ("as_training", "fp32")
# torch.compile modes of compile_embedder (hparam compile_mode, compile_run_opts)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@register_checkpoint_hooks
class CompleteMarker:
    """Written after every other file of a checkpoint."""

    @mark_as_saver
    def _save(self, path):
        Path(path).write_text("complete\n")

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        pass


def _checkpoint_folders(checkpointer) -> list[Path]:
    """The checkpoint folders, oldest first, listed directly: SpeechBrain's
    ``find_checkpoints`` fails on a CKPT.yaml a kill left empty (it is written first)."""
    folder = Path(checkpointer.checkpoints_dir)
    return sorted(p for p in folder.glob(f"{CKPT_PREFIX}*") if p.is_dir()) \
        if folder.is_dir() else []


def _complete(path: Path) -> bool:
    return (path / f"{COMPLETE}.ckpt").is_file()


def remove_incomplete_checkpoints(checkpointer) -> None:
    """Delete checkpoints whose saving was interrupted: no ``complete.ckpt``, which is
    written last."""
    if if_main_process():
        for path in _checkpoint_folders(checkpointer):
            if not _complete(path):
                logger.warning("removing the incomplete checkpoint %s", path)
                shutil.rmtree(path)
    ddp_barrier()


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training; the message says where the same command resumes
    (the recipes print it as their one line and exit 130, the shell's code for SIGINT)."""


def _resumes_from(checkpointer) -> str:
    """Where a run resumes: its latest complete checkpoint's step (SpeechBrain's
    ``brain.ckpt``, yaml), or step 0."""
    complete = [p for p in _checkpoint_folders(checkpointer) if _complete(p)]
    if not complete:
        return "from step 0 (no checkpoint yet)"
    step = yaml.safe_load((complete[-1] / "brain.ckpt").read_text())["optimizer_step"]
    return f"from its checkpoint at step {step}"


@functools.partial(register_checkpoint_hooks, save_on_main_only=False)
class RngState:
    """The global RNG states (python, numpy, torch, the current CUDA device's) of every
    DDP process, for exact resume: each rank draws its own dropout and masks.

    Every rank saves (SpeechBrain hands all of them the checkpoint's ``rng.ckpt``): rank 0
    to ``rng.ckpt``, rank R to :func:`rank_rng_path` beside it, and waits for the others, so
    the checkpoint is complete only once every rank's file is written. A rank loads its own
    file, or rank 0's where there is none (a checkpoint of a run with fewer processes, or
    of an earlier lowres, which saved rank 0's only). Only the current device's CUDA state
    is kept, so a run resumes with another number of visible GPUs.

    Stored as tensors and plain numbers, so it loads with ``weights_only=True`` (a shared
    run folder cannot run code through it, lowres.io.tensor_files)."""

    @mark_as_saver
    def _save(self, path):
        version, words, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        torch.save({
            "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64),
                       "gauss": gauss},
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        }, rank_rng_path(path, rank()))
        ddp_barrier()

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        own = rank_rng_path(path, rank())
        if not own.is_file():
            logger.warning("%s not found: this process resumes rank 0's random state", own)
            own = Path(path)
        # an rng.ckpt of an earlier lowres holds numpy's uint32 key array itself: allowed,
        # as data only (no other global), so runs checkpointed before still resume
        with torch.serialization.safe_globals([np._core.multiarray._reconstruct, np.ndarray,
                                               np.dtype, np.dtypes.UInt32DType]):
            state = load_tensors(own)
        py, npy = state["python"], state["numpy"]
        if isinstance(py, tuple):  # that earlier format: the states as python returns them
            random.setstate(py)
            np.random.set_state(npy)
        else:
            random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
            np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32),
                                 npy["pos"], npy["has_gauss"], npy["cached"]))
        torch.set_rng_state(state["torch"])
        cuda = state["cuda"]
        if isinstance(cuda, list):  # an earlier lowres: every device's state of rank 0
            device = torch.cuda.current_device() if torch.cuda.is_available() else len(cuda)
            cuda = cuda[device] if device < len(cuda) else None
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) \
        else module


def progress_description(text: str) -> None:
    """Show step, loss and lr on the (single) training progress bar, if any."""
    for bar in list(getattr(tqdm, "_instances", [])):
        if not bar.disable:
            bar.set_description(text, refresh=False)


def parse_recipe_args(argv: list[str]) -> tuple[str, object, dict, int]:
    """SpeechBrain's command line of a recipe script: the yaml, the run options, the
    ``--key value`` overrides (a dict) and the DDP world size, after joining the DDP group
    that torchrun set up (a no-op for one process)."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    check_device(run_opts.device)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    sb.utils.distributed.ddp_init_group(run_opts)
    return hparams_file, run_opts, overrides_dict(overrides), world_size


def effective_precision(hparams_precision: str, run_opts) -> tuple[object, str, str]:
    """The run options with the training precision the run's device can use
    (``--precision`` wins over the yaml; fp16 becomes fp32 on CPU), that precision, and a
    note saying what changed (empty if nothing did)."""
    precision = run_opts.precision if "precision" in run_opts.overridden_args \
        else hparams_precision
    device = run_opts.device or sb.utils.distributed.infer_device()
    precision, note = precision_on(precision, device, key="precision")
    run_opts = dataclasses.replace(run_opts, precision=precision,
                                   overridden_args=run_opts.overridden_args | {"precision"})
    return run_opts, precision, note


def with_valid_precision(run_opts, valid_precision: str) -> object:
    """The run options with the precision of the validations during training, which choose
    the tested checkpoint (SpeechBrain's ``eval_precision``). ``as_training``: the training
    precision's autocast, as Lightning 1.5's native AMP ran the published runs'
    validations (docs/study.md); ``fp32``: SpeechBrain's default. ``--eval_precision`` on
    the command line wins. Call it after :func:`effective_precision` (fp16 is fp32 on CPU)."""
    if "eval_precision" in run_opts.overridden_args:
        return run_opts
    precision = run_opts.precision if valid_precision == "as_training" else "fp32"
    return dataclasses.replace(run_opts, eval_precision=precision,
                               overridden_args=run_opts.overridden_args | {"eval_precision"})


def compile_run_opts(values: dict, run_opts) -> object:
    """SpeechBrain's run options with ``compile_embedder``: torch.compile of the embedder
    alone (Brain._compile, in ``compile_mode``), unless the command line's ``--compile`` /
    ``--compile_module_keys`` already chose the modules."""
    if "compile_mode" in run_opts.overridden_args and run_opts.compile_mode not in COMPILE_MODES:
        raise invalid_hparam("compile_mode", run_opts.compile_mode,
                             f"must be one of {', '.join(COMPILE_MODES)}")
    if not values.get("compile_embedder") or run_opts.compile:
        return run_opts
    return dataclasses.replace(
        run_opts, compile=True, compile_module_keys=run_opts.compile_module_keys or ["embedder"],
        overridden_args=run_opts.overridden_args | {"compile", "compile_module_keys"})


def precision_run_opts(values: dict, run_opts) -> tuple[object, str, str]:
    """(run options, training precision, note): SpeechBrain's run options with the training
    precision the device can use (the note says when it fell back, :func:`effective_precision`)
    and the precision of the validations that choose the tested checkpoint
    (``valid_precision``, :func:`with_valid_precision`)."""
    run_opts, precision, note = effective_precision(values["precision"], run_opts)
    return with_valid_precision(run_opts, values["valid_precision"]), precision, note


def start_run(resolved: ResolvedHparams, world_size: int, note: str = "") -> dict:
    """The built hparams of a run whose folder (``output_folder``) now exists with its
    record (:func:`record_run`) and SpeechBrain's log; ``note`` is logged as a warning."""
    hparams = resolved.build()  # seeds every process alike (the yaml's __set_seed) ...
    reseed_rank(hparams["seed"])  # ... and now each rank its own
    out = Path(hparams["output_folder"])
    sb.create_experiment_directory(experiment_directory=str(out))
    if if_main_process():  # SpeechBrain copied its caller, this module; the recipe is recorded
        (out / Path(__file__).name).unlink(missing_ok=True)
    if note:
        logger.warning(note)
    record_run(out, resolved, world_size)
    return hparams


def optimizer_class(opt_class, fused: bool):
    """``opt_class`` with ``fused=True`` for ``fused_optimizer`` (torch's fused Adam: one
    kernel per step for all parameters; torch 2.9 has it for CUDA and CPU tensors)."""
    if not fused:
        return opt_class
    if "fused" not in inspect.signature(opt_class).parameters:
        raise invalid_hparam("fused_optimizer", fused, f"opt_class {opt_class} has no fused "
                             "implementation (torch.optim.Adam, AdamW and SGD do)")
    return functools.partial(opt_class, fused=True)


def wrap_cpu_ddp(brain) -> bool:
    """DDP-wrap the trainable modules of a CPU (gloo) run; False if SpeechBrain should.

    SpeechBrain converts BatchNorm to SyncBatchNorm, which needs GPUs: on CPU (gloo,
    tests) use plain DDP; each process then keeps its own BatchNorm statistics."""
    if not (brain.distributed_launch and brain.device_type == "cpu"):
        return False
    for name, module in brain.modules.items():
        if any(p.requires_grad for p in module.parameters()):
            brain.modules[name] = torch.nn.parallel.DistributedDataParallel(
                module, find_unused_parameters=brain.find_unused_parameters)
    return True


@contextlib.contextmanager
def _remember_ctrl_c(brain):
    """While training on the main thread, SIGINT sets ``brain.ctrl_c`` before it raises
    KeyboardInterrupt as Python's own handler does; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        brain.ctrl_c = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ResumableBrain(sb.core.Brain):
    """A ``Brain`` whose runs resume exactly after a kill: the hparams' LR schedule
    (``lr_schedule``, ``lr``, ``max_steps``, ...), :class:`RngState` and, saved last,
    :class:`CompleteMarker` in every checkpoint; torch files read weights-only; a checkpoint
    cut short removed before SpeechBrain recovers the latest; plain DDP on CPU. A run that
    starts from nothing calls :meth:`on_fresh_start` (the step-0 validation), one that
    resumes logs its step. After each optimiser step the LR schedule steps and the training
    means are logged every ``log_interval`` steps (:meth:`log_train`)."""

    def init_optimizers(self):
        """SpeechBrain's one optimiser over every parameter, or one with the parameter
        groups of :meth:`lr_groups`, whose learning rates the LR schedule scales alike."""
        groups = self.lr_groups()
        if groups is None:
            super().init_optimizers()
        else:
            self.optimizer = self.opt_class([{"params": params} for params, _ in groups])
            self.optimizers_dict = {"opt_class": self.optimizer}
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
        h = self.hparams
        self.lr_scheduler = build_lr_scheduler(
            self.optimizer, h.lr_schedule, h.lr, h.max_steps, base_lr=h.base_lr,
            final_lr=h.final_lr, one_cycle_half_steps=h.one_cycle_half_steps,
            lr_scales=None if groups is None else [scale for _, scale in groups])
        self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)
        self.checkpointer.add_recoverable("rng", RngState())
        # Saved last: a checkpoint without it was cut short (e.g. SIGKILL while saving).
        self.checkpointer.add_recoverable(COMPLETE, CompleteMarker())
        use_safe_recovery(self.checkpointer)  # weights_only=True for every torch file

    def lr_groups(self) -> list[tuple[list[torch.nn.Parameter], float]] | None:
        """Parameter groups, each with its learning rate relative to ``lr``, the first one
        at ``lr`` (logs and the progress bar show ``param_groups[0]``); None: one group of
        every parameter (SpeechBrain's)."""
        return None

    def fit(self, *args, **kwargs):
        """SpeechBrain's ``fit``; Ctrl-C becomes :class:`RunInterrupted`.

        Python drops a KeyboardInterrupt raised while a finaliser (``__del__``, a weakref
        callback) runs, so Ctrl-C is also remembered (:func:`_remember_ctrl_c`) and raised
        again at the end of the next batch: a run never goes on after it."""
        self.ctrl_c = False
        try:
            with _remember_ctrl_c(self):
                super().fit(*args, **kwargs)
        except KeyboardInterrupt:
            raise RunInterrupted(f"interrupted: run the same command again to resume "
                                 f"{self.hparams.output_folder} "
                                 f"{_resumes_from(self.checkpointer)}") from None

    def _wrap_distributed(self):
        if not wrap_cpu_ddp(self):  # on CPU (gloo): plain DDP, no SyncBatchNorm
            super()._wrap_distributed()

    def on_fit_start(self):
        remove_incomplete_checkpoints(self.checkpointer)
        super().on_fit_start()  # ... and recovers the latest (complete) checkpoint, if any
        if self.checkpointer.find_checkpoint() is None:
            self.on_fresh_start()
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"resumed_at_step": self.optimizer_step,
                            "epoch": self.hparams.epoch_counter.current})

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """After an optimiser step: the LR schedule's step, step, loss and lr on the progress
        bar and, every ``log_interval`` steps, the means of ``self.log_stats`` (any object
        with ``batches`` and ``summary()``) since the last such log, which then restarts.
        A Ctrl-C whose KeyboardInterrupt was lost is raised here."""
        if getattr(self, "ctrl_c", False):
            raise KeyboardInterrupt
        if not should_step:
            return
        self.lr_scheduler.step()
        step, lr = self.optimizer_step, self.optimizer.param_groups[0]["lr"]
        progress_description(f"step {step} loss {loss.item():.3f} lr {lr:.2e}")
        if step % self.hparams.log_interval == 0 and self.log_stats.batches:
            self.log_train(step, lr, self.log_stats.summary())
            self.log_stats = type(self.log_stats)()

    def check_loss_isfinite(self, loss):
        """SpeechBrain's count of non-finite losses, agreed by all DDP processes: a step
        whose loss is not finite on any process counts on every one, so they all stop at
        the same step (GradScaler skips that step on all of them)."""
        super().check_loss_isfinite(loss if all_ranks_finite(loss) else loss.new_tensor(math.nan))

    def log_train(self, step: int, lr: float, stats: dict) -> None:
        """Log the training means of the last ``log_interval`` steps (train_log.txt)."""
        self.hparams.train_logger.log_stats(stats_meta={"step": step, "lr": lr},
                                            train_stats=stats)

    def on_fresh_start(self) -> None:
        """Before the first step of a run with no checkpoint: the validation at step 0."""
        if getattr(self, "valid_loader", None) is not None:
            logger.info("Validation before training (step 0)")
            self._fit_valid(self.valid_loader, epoch=0, enable=not self.noprogressbar
                            and if_main_process())


def record_run(out: Path, resolved: ResolvedHparams, world_size: int) -> None:
    """Write the run's resolved ``hyperparams.yaml`` (standalone: it reloads as the run's
    hparams) and append the command to ``command.txt`` (main process only)."""
    if if_main_process():
        write_record(out, resolved.yaml,
                     f"from {resolved.path.resolve()} with overrides {resolved.overrides}",
                     world_size)


def step_budget_loader(brain, dataset, schedule, hparams, world_size: int,
                       sampler_class=None):
    """The training loader of a step-budget run: ``sampler_class`` (StepBudgetSampler)
    over ``schedule``, this process's ``batch_size / world_size`` items per step, registered
    as SpeechBrain's ``dataloader-TRAIN`` recoverable (its position within an "epoch").

    Each process samples its own share (the epochs differ in length, which SpeechBrain's
    DistributedSamplerWrapper does not follow), so the loader is made here, not by the
    Brain. It has its own generator: creating its iterator leaves the global RNG untouched,
    so a resumed run draws the same masks and dropout as an uninterrupted one."""
    import speechbrain as sb

    from lowres.data.loading import StepBudgetSampler

    batch = hparams["batch_size"]
    brain.schedule = schedule
    hparams["epoch_counter"].limit = len(schedule.epoch_ends)
    sampler = (sampler_class or StepBudgetSampler)(
        len(dataset), [s * batch for s in schedule.epoch_ends], hparams["seed"],
        schedule.items_per_pass, rank=rank(), world_size=world_size)
    brain.train_sampler = sampler  # set_epoch
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, sampler=sampler, drop_last=True, batch_size=batch // world_size,
        num_workers=hparams["num_workers"], pin_memory=str(brain.device).startswith("cuda"),
        generator=torch.Generator().manual_seed(hparams["seed"]))
    brain.checkpointer.add_recoverable("dataloader-TRAIN", loader)
    return loader
