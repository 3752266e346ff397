"""Each DDP process resumes its own random state (lowres.training.runs.RngState): python,
numpy, torch and its own CUDA device's, whatever number of GPUs the resumed run sees."""

import os
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from speechbrain.utils.checkpoints import Checkpointer

from lowres.io.run_folder import rank_rng_path
from lowres.training.runs import RngState


class FakeCuda:
    """torch.cuda's RNG functions for ``devices`` GPUs, this process on ``current``: each
    device's state a tensor of its own value; what set_rng_state received is recorded, a
    device beyond ``devices`` an IndexError."""

    def __init__(self, monkeypatch, devices: int, current: int):
        self.states = [torch.full((4,), 10 + d, dtype=torch.uint8) for d in range(devices)]
        self.current, self.restored = current, []
        for name, value in {
            "is_available": lambda: True, "device_count": lambda: devices,
            "current_device": lambda: self.current,
            "get_rng_state": lambda device="cuda": self.states[self.current].clone(),
            "get_rng_state_all": lambda: [s.clone() for s in self.states],
            "set_rng_state": self.set_rng_state,
            "set_rng_state_all": lambda states: [self.set_rng_state(s, i)
                                                 for i, s in enumerate(states)],
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)

    def set_rng_state(self, state, device="cuda"):
        if (self.current if device == "cuda" else int(device)) >= len(self.states):
            raise IndexError("no such CUDA device")
        self.restored.append(state)


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _rank_resumes(rank: int, folder: str, results: str) -> None:
    os.environ["RANK"] = os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank,
                            world_size=2)
    with pytest.MonkeyPatch.context() as m:
        cuda = FakeCuda(m, devices=2, current=rank)  # rank R on cuda:R
        checkpointer = Checkpointer(f"{folder}/save", {"rng": RngState()})
        random.seed(rank)
        np.random.seed(rank)
        torch.manual_seed(rank)
        checkpointer.save_checkpoint()
        expected = draws()
        random.seed(99)
        np.random.seed(99)
        torch.manual_seed(99)
        checkpointer.recover_if_possible()
        got = draws()
        torch.save({"expected": expected, "got": got, "cuda": cuda.restored},
                   f"{results}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed's gloo")
def test_each_of_two_gloo_processes_resumes_its_own_state(tmp_path):
    mp.spawn(_rank_resumes, args=(str(tmp_path), str(tmp_path)), nprocs=2)
    outcome = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert outcome[0]["expected"] != outcome[1]["expected"]  # the ranks draw differently
    for rank, out in enumerate(outcome):
        assert out["got"] == out["expected"], rank
        assert len(out["cuda"]) == 1 and int(out["cuda"][0][0]) == 10 + rank, rank


def earlier_checkpoint(path, devices: int) -> None:
    """rng.ckpt as lowres wrote it before: rank 0's states, CUDA's a list of every
    device's."""
    RngState()._save(path)  # one process, no GPU
    state = torch.load(path, weights_only=True)
    state["cuda"] = [torch.full((4,), 10 + d, dtype=torch.uint8) for d in range(devices)]
    torch.save(state, path)


def test_an_earlier_single_file_checkpoint_resumes_on_fewer_gpus(tmp_path, monkeypatch):
    """Rank 0's file, saved with two GPUs visible, resumes on one (no IndexError) and on a
    rank with no file of its own (rank 0's states, as before)."""
    earlier_checkpoint(tmp_path / "rng.ckpt", devices=2)
    expected = draws()
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        cuda = FakeCuda(monkeypatch, devices=1, current=0)
        RngState()._load(tmp_path / "rng.ckpt", end_of_epoch=False)
        assert draws() == expected
        assert [int(s[0]) for s in cuda.restored] == [10]
    assert not rank_rng_path(tmp_path / "rng.ckpt", 1).exists()
