"""A hand-made run folder (no training): a tiny random x-vector, one checkpoint, and
optionally eval/best/results.json, as train.py would leave them for lowres's commands."""

from pathlib import Path

import torch

from lowres.io.hparams import load_hparams
from lowres.io.run_folder import hyperparams_path, write_results

HPARAMS = """\
output_folder: {out}
frontend: !new:lowres.models.features.MfccFrontend
    n_mfcc: 20
    n_mels: 40
    spec_augment: false
embedder: !new:lowres.models.MfccEmbedder
    frontend: !ref <frontend>
    backbone: !new:speechbrain.lobes.models.Xvector.Xvector
        in_channels: 20
        tdnn_channels: [32, 32, 32, 32, 64]
        lin_neurons: 16
checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer
    checkpoints_dir: !ref <output_folder>/save
    recoverables:
        embedder: !ref <embedder>
"""


def make_run(out: Path, results: dict | None = None, seed: int = 0) -> Path:
    """Write the run folder ``out`` (weights drawn with ``seed``); ``results`` becomes its
    eval/best/results.json."""
    out.mkdir(parents=True, exist_ok=True)
    hyperparams_path(out).write_text(HPARAMS.format(out=out))
    torch.manual_seed(seed)
    hparams = load_hparams(hyperparams_path(out))
    hparams["checkpointer"].save_checkpoint(meta={"val_eer": 0.1, "step": 1})
    if results is not None:
        write_results(out, "best", results)
    return out
