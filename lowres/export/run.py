"""What an export reads from a run folder: the model at one checkpoint and the run's facts.

A run folder (train.py's ``output_folder``) holds the resolved ``hyperparams.yaml``,
``save/CKPT+*/{embedder,classifier}.ckpt``, ``save/label_encoder.txt`` and, once evaluated,
``eval/<checkpoint>/results.json``. :func:`load_run` rebuilds the lowres embedder and
classifier with that checkpoint's weights (loaded with ``weights_only=True``) and gathers
what the model card needs: the results, the training subset's ``stats.json`` and whether
the run trained on the synthetic corpus.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lowres.io.atomic import read_json
from lowres.io.corpus_notice import synthetic_notice
from lowres.io.run_folder import hyperparams_path, label_encoder_path, read_results
from lowres.io.tensor_files import UnsafeFileError, load_tensors
from lowres.scoring.speaker_verifier import Threshold, run_threshold, stored_decision

__all__ = ["ExportError", "RunForExport", "corpus_found", "decision_threshold", "family_of",
           "is_synthetic", "load_run"]

FAMILIES = ("xvector", "ecapa", "wav2vec2")


class ExportError(RuntimeError):
    """The run cannot be exported as asked; the message names the file or value."""


@dataclass
class RunForExport:
    """A run at one checkpoint, with the facts of its model card."""

    folder: Path
    checkpoint: str  # best | last
    hparams: dict
    ckpt: object  # speechbrain Checkpoint (.path, .meta, .paramfiles)
    embedder: torch.nn.Module  # eval mode, checkpoint weights
    classifier: torch.nn.Module  # eval mode, checkpoint weights
    family: str  # one of FAMILIES
    label_encoder: Path
    results: dict | None = None  # eval/<checkpoint>/results.json
    stats: dict | None = None  # the training subset's stats.json
    synthetic_notice: str | None = None  # the corpus README's notice when synthetic
    corpus_found: bool = True  # False: the training data was not here to check
    yaml_text: str = field(default="", repr=False)  # the run's hyperparams.yaml


def decision_threshold(run: RunForExport) -> Threshold | None:
    """The run's decision threshold on cosine scores, as ``python -m lowres.verify`` decides
    by default (:func:`lowres.scoring.speaker_verifier.run_threshold`); None when the run
    has no validation results."""
    return run_threshold(*stored_decision(run.results))


def family_of(embedder: torch.nn.Module) -> str:
    """``xvector``, ``ecapa`` or ``wav2vec2`` from the embedder's classes."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.lobes.models.Xvector import Xvector

    from lowres.models.xvector_ecapa import MfccEmbedder

    if isinstance(embedder, MfccEmbedder):
        if isinstance(embedder.backbone, Xvector):
            return "xvector"
        if isinstance(embedder.backbone, ECAPA_TDNN):
            return "ecapa"
        raise ExportError(f"MfccEmbedder with backbone {type(embedder.backbone).__name__}: "
                          "only SpeechBrain's Xvector and ECAPA_TDNN can be exported")
    if type(embedder).__name__ == "Wav2vec2Embedder":  # no transformers import for the others
        return "wav2vec2"
    raise ExportError(f"embedder {type(embedder).__name__} cannot be exported "
                      f"(known: {', '.join(FAMILIES)})")


def _first_training_wav(hparams: dict) -> Path | None:
    train_csv = Path(hparams.get("train_csv") or "")
    if not train_csv.is_file():
        return None
    from lowres.io.lists import read_manifest

    return Path(read_manifest(train_csv, required=("wav",)).wav.iloc[0])


def _corpus_roots(hparams: dict) -> list[Path]:
    """Folders that may hold the corpus README: data_folder, then parents of a training wav."""
    roots = [Path(hparams["data_folder"])] if hparams.get("data_folder") else []
    wav = _first_training_wav(hparams)
    return roots + (list(wav.parents) if wav is not None else [])


def is_synthetic(hparams: dict) -> str | None:
    """The synthetic corpus's notice when the run trained on it, else None.

    ``prepare.synthetic`` writes ``README.txt`` beginning with its NOTICE at the corpus root;
    it is looked for in ``data_folder`` and in the folders above the training files.
    """
    for root in _corpus_roots(hparams):
        notice = synthetic_notice(root)
        if notice:
            return notice
    return None


def corpus_found(hparams: dict) -> bool:
    """Whether the training data is on this machine (so :func:`is_synthetic` could look)."""
    if hparams.get("data_folder") and Path(hparams["data_folder"]).is_dir():
        return True
    wav = _first_training_wav(hparams)
    return wav is not None and wav.is_file()


def _load_state(path: Path) -> dict:
    try:
        return load_tensors(path)
    except UnsafeFileError as err:
        raise ExportError(str(err)) from err


def load_run(run: str | os.PathLike, checkpoint: str = "best") -> RunForExport:
    """Rebuild the run's embedder and classifier at its ``best`` / ``last`` checkpoint."""
    from lowres.scoring.checkpoints import (
        CHECKPOINTS,
        EvaluationError,
        load_checkpoint,
        load_run_hparams,
    )

    if checkpoint not in CHECKPOINTS:
        raise ExportError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    folder = Path(run)
    if not folder.is_dir():
        raise ExportError(f"run folder not found: {folder}")
    try:
        hparams = load_run_hparams(folder)
    except EvaluationError as err:
        raise ExportError(str(err)) from err
    try:
        ckpt = load_checkpoint(hparams, checkpoint)  # the embedder's weights
    except (EvaluationError, UnsafeFileError) as err:
        raise ExportError(str(err)) from err
    if "classifier" not in ckpt.paramfiles:
        raise ExportError(f"checkpoint {ckpt.path} has no classifier.ckpt")
    hparams["classifier"].load_state_dict(_load_state(ckpt.paramfiles["classifier"]))
    hparams["embedder"].eval()
    hparams["classifier"].eval()
    label_encoder = label_encoder_path(folder)
    if not label_encoder.is_file():
        raise ExportError(f"{label_encoder} not found: the training speakers' labels are "
                          "needed for classify_batch")
    stats = None
    if hparams.get("train_csv"):
        stats = read_json(Path(hparams["train_csv"]).parent / "stats.json")
    return RunForExport(
        folder=folder, checkpoint=checkpoint, hparams=hparams, ckpt=ckpt,
        embedder=hparams["embedder"], classifier=hparams["classifier"],
        family=family_of(hparams["embedder"]), label_encoder=label_encoder,
        results=read_results(folder, checkpoint), stats=stats,
        synthetic_notice=is_synthetic(hparams), corpus_found=corpus_found(hparams),
        yaml_text=hyperparams_path(folder).read_text(encoding="utf-8"),
    )
