"""LR schedules (lowres.training.schedules) against their definitions (docs/study.md,
'Training recipe')."""

import math

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from lowres.training.schedules import build_lr_scheduler

torch.set_num_threads(1)

LR = 1e-3
BASE = 1e-8


def _optimizer():
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.123)


def _lrs(name, max_steps, n_steps, **kwargs):
    """Learning rate in force at optimiser steps 0..n_steps (scheduler stepped after each)."""
    opt = _optimizer()
    sched = build_lr_scheduler(opt, name, LR, max_steps, **kwargs)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n_steps):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def _triangular2(step, half, lr=LR, base=BASE):
    cycle = step // (2 * half)
    x = abs(step / half - 2 * cycle - 1)
    return base + (lr - base) * max(0.0, 1 - x) / 2**cycle


def test_cyclic_four_cycles_with_halving_peaks():
    max_steps = 800  # half-cycle 100
    lrs = _lrs("cyclic", max_steps, max_steps)
    assert lrs[0] == pytest.approx(BASE)
    peaks = [lrs[100], lrs[300], lrs[500], lrs[700]]
    amp = LR - BASE  # triangular2 halves the amplitude above base_lr each cycle
    assert peaks == pytest.approx([BASE + amp / 2**k for k in range(4)], rel=1e-9)
    for trough in (200, 400, 600, 800):
        assert lrs[trough] == pytest.approx(BASE, abs=1e-12)
    for step in (0, 37, 100, 150, 250, 333, 512, 799):
        assert lrs[step] == pytest.approx(_triangular2(step, 100), rel=1e-6)
    # never exceeds the first peak; second cycle's peak is exactly half the first
    assert max(lrs) == pytest.approx(LR)


def test_cyclic_equals_torch_cycliclr_triangular2():
    max_steps = 160
    ours = _lrs("cyclic", max_steps, max_steps)
    opt = _optimizer()
    ref = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=BASE, max_lr=LR, step_size_up=20, mode="triangular2", cycle_momentum=False
    )
    theirs = [opt.param_groups[0]["lr"]]
    for _ in range(max_steps):
        opt.step()
        ref.step()
        theirs.append(opt.param_groups[0]["lr"])
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_one_cycle_uses_its_own_half_cycle():
    lrs = _lrs("one_cycle", 1000, 120, one_cycle_half_steps=50)
    assert lrs[0] == pytest.approx(BASE)
    assert lrs[25] == pytest.approx(BASE + (LR - BASE) / 2, rel=1e-6)
    assert lrs[50] == pytest.approx(LR)
    assert lrs[100] == pytest.approx(BASE, abs=1e-12)
    assert lrs[110] == pytest.approx(_triangular2(110, 50), rel=1e-6)  # second cycle: halved


def test_constant():
    lrs = _lrs("constant", 50, 60)
    assert lrs == [LR] * 61


def test_exp_decay_endpoints_and_shape():
    max_steps = 100
    lrs = _lrs("exp_decay", max_steps, 120)
    assert lrs[0] == pytest.approx(LR)
    assert lrs[max_steps] == pytest.approx(5e-6, rel=1e-9)
    assert lrs[50] == pytest.approx(math.sqrt(LR * 5e-6), rel=1e-9)  # geometric midpoint
    assert all(a > b for a, b in zip(lrs[:max_steps], lrs[1 : max_steps + 1], strict=True))
    assert lrs[120] == pytest.approx(5e-6, rel=1e-9)  # held after the budget


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "cosine"}, "cosine"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"max_steps": 0}, "max_steps"),
        ({"name": "exp_decay", "lr": 1e-6}, "final_lr"),
        ({"name": "one_cycle", "one_cycle_half_steps": 0}, "one_cycle_half_steps"),
    ],
)
def test_bad_values_raise_with_name(kwargs, needle):
    args = {"name": "cyclic", "lr": LR, "max_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=needle):
        build_lr_scheduler(_optimizer(), **args)


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match="cyclic, constant, exp_decay, one_cycle"):
        build_lr_scheduler(_optimizer(), "triangular", LR, 100)


@pytest.mark.parametrize("name", ["cyclic", "one_cycle", "constant", "exp_decay"])
def test_resume_through_speechbrain_checkpointer(tmp_path, name):
    kwargs = {"one_cycle_half_steps": 7}
    full = _lrs(name, 80, 40, **kwargs)

    opt = _optimizer()
    sched = build_lr_scheduler(opt, name, LR, 80, **kwargs)
    ckpt = Checkpointer(tmp_path, recoverables={"optimizer": opt, "scheduler": sched})
    for _ in range(17):
        opt.step()
        sched.step()
    ckpt.save_checkpoint()

    opt2 = _optimizer()
    sched2 = build_lr_scheduler(opt2, name, LR, 80, **kwargs)
    ckpt2 = Checkpointer(tmp_path, recoverables={"optimizer": opt2, "scheduler": sched2})
    assert ckpt2.recover_if_possible() is not None
    resumed = [opt2.param_groups[0]["lr"]]
    for _ in range(40 - 17):
        opt2.step()
        sched2.step()
        resumed.append(opt2.param_groups[0]["lr"])
    assert resumed == pytest.approx(full[17:], rel=1e-12)
