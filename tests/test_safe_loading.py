"""A run or model folder someone shares cannot run code here: a torch file whose pickle
would call os.system is refused, with the file named, before anything runs."""

import os
import random

import numpy as np
import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer
from tiny_run import make_run

from lowres.export.__main__ import main as export_main
from lowres.io.run_folder import save_folder
from lowres.io.tensor_files import UnsafeFileError, use_safe_recovery
from lowres.scoring.checkpoints import load_checkpoint, load_run_hparams
from lowres.scoring.evaluation import training_cohort
from lowres.training.runs import RngState


class Payload:
    """Unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path, marker):
    torch.save({"weight": torch.zeros(1), "bias": Payload(marker)}, path)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the planted payload ran"


def test_run_checkpoint_with_a_payload_is_refused(tmp_path, marker, capsys):
    run = make_run(tmp_path / "run")
    ckpt = next(save_folder(run).glob("CKPT+*"))
    plant(ckpt / "embedder.ckpt", marker)
    with pytest.raises(UnsafeFileError, match="embedder.ckpt: refused"):
        load_checkpoint(load_run_hparams(run), "best")
    # the export of a shared run folder refuses it too, naming the file
    assert export_main([str(run), "--out", str(tmp_path / "sb")]) == 2
    assert "embedder.ckpt: refused" in capsys.readouterr().err
    assert not (tmp_path / "sb").exists()


def test_training_resume_and_cohort_cache_are_refused(tmp_path, marker):
    # every torch file train.py's checkpointer recovers (modules, optimiser, scheduler) ...
    model = torch.nn.Linear(1, 1)
    checkpointer = Checkpointer(save_folder(tmp_path), {"model": model})
    ckpt = checkpointer.save_checkpoint()
    plant(ckpt.paramfiles["model"], marker)
    use_safe_recovery(checkpointer)
    with pytest.raises(UnsafeFileError, match="model.ckpt: refused"):
        checkpointer.recover_if_possible()
    # ... its RNG state ...
    plant(tmp_path / "rng.ckpt", marker)
    with pytest.raises(UnsafeFileError, match="rng.ckpt: refused"):
        RngState()._load(tmp_path / "rng.ckpt", end_of_epoch=False)
    # ... and the evaluation's AS-norm cohort cache
    plant(tmp_path / "cohort.pt", marker)
    with pytest.raises(UnsafeFileError, match="cohort.pt: refused"):
        training_cohort({"train_csv": "train.csv"}, "CKPT", tmp_path / "cohort.pt", "cpu")


def test_rng_state_is_tensors_only_and_restores_exactly(tmp_path):
    random.seed(3)
    np.random.seed(4)
    np.random.normal()  # numpy then holds a cached gaussian
    RngState()._save(tmp_path / "rng.ckpt")
    torch.load(tmp_path / "rng.ckpt", weights_only=True)
    expected = random.random(), np.random.normal(), torch.rand(1)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    RngState()._load(tmp_path / "rng.ckpt", end_of_epoch=False)
    assert (random.random(), np.random.normal(), torch.rand(1)) == expected


def test_exported_folder_with_a_payload_is_refused_by_speechbrain(tmp_path, marker):
    from speechbrain.inference.speaker import EncoderClassifier
    from test_export import make_run as make_full_run

    run = make_full_run(tmp_path, "xvector")
    assert export_main([str(run), "--out", str(tmp_path / "sb")]) == 0
    plant(tmp_path / "sb" / "embedding_model.ckpt", marker)
    with pytest.raises(Exception, match="Weights only load failed"):
        EncoderClassifier.from_hparams(source=str(tmp_path / "sb"),
                                       savedir=str(tmp_path / "cache"))


def test_rng_state_of_an_earlier_run_still_resumes(tmp_path):
    """rng.ckpt as lowres wrote it before (python's and numpy's states as they return them)."""
    random.seed(5)
    np.random.seed(6)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(), "cuda": None}, tmp_path / "rng.ckpt")
    expected = random.random(), np.random.normal(), torch.rand(1)
    random.seed(0)
    np.random.seed(0)
    RngState()._load(tmp_path / "rng.ckpt", end_of_epoch=False)
    assert (random.random(), np.random.normal(), torch.rand(1)) == expected
