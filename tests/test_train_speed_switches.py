"""Step-time switches (issue 14 section 4): compile_embedder / compile_mode and
fused_optimizer reach SpeechBrain's Brain and the optimiser, bad values are refused before
training, and a compiled embedder trains as the eager one does."""

import copy
import functools

import pytest
import speechbrain as sb
import torch
from conftest import load_script
from test_train_hparams import HPARAMS, TRAIN
from torch._dynamo.eval_frame import OptimizedModule

from lowres.io.hparams import HparamsError, load_hparams, plain_values
from lowres.io.run_folder import train_log_path
from lowres.training.runs import compile_run_opts, optimizer_class
from lowres.training.speaker_checks import check_hparams

CELL = HPARAMS / "xvector_tiny_few.yaml"


@pytest.fixture(scope="module")
def train():
    return load_script(TRAIN, "lowres_train")


def brain_for(argv, modules):
    """A plain Brain built as train.py builds its SpeakerBrain's run options."""
    _, run_opts, overrides = sb.parse_arguments([str(CELL), "--data_folder=/x", *argv])
    values = plain_values(CELL, overrides)
    check_hparams(values, world_size=1)
    run_opts = compile_run_opts(values, run_opts)
    brain = sb.core.Brain(modules=modules, hparams={"compile_mode": values["compile_mode"]},
                          run_opts=run_opts)
    brain._compile()  # what Brain.on_fit_start does first
    return brain


def modules():
    return {"embedder": torch.nn.Linear(4, 3), "classifier": torch.nn.Linear(3, 2)}


def test_compile_off_by_default():
    brain = brain_for([], modules())
    assert not isinstance(brain.modules.embedder, OptimizedModule)
    assert not brain.compile


@pytest.mark.parametrize("mode_arg", [[], ["--compile_mode=max-autotune"]])
def test_compile_embedder_compiles_the_embedder_only(mode_arg):
    # --compile_mode on the command line is SpeechBrain's run option; the yaml's
    # compile_mode reaches the Brain as an hparam: both are what Brain._compile uses
    brain = brain_for(["--compile_embedder=true", *mode_arg], modules())
    assert isinstance(brain.modules.embedder, OptimizedModule)
    assert not isinstance(brain.modules.classifier, OptimizedModule)
    assert brain.compile_mode == ("max-autotune" if mode_arg else "default")


@pytest.mark.parametrize("args, message", [
    (["--compile_embedder=yes"], "compile_embedder='yes'"),
    (["--fused_optimizer=1"], "fused_optimizer=1"),
    (["--compile_mode=fastest"], "compile_mode='fastest'"),
])
def test_bad_values_refused_before_training(train, args, message, tmp_path):
    with pytest.raises(HparamsError) as err:
        train.main([str(CELL), f"--output_folder={tmp_path}", "--data_folder=/nonexistent",
                    *args])
    assert message in str(err.value)
    assert not train_log_path(tmp_path).exists()


def test_fused_optimizer_reaches_adam_and_steps_as_the_default():
    h = load_hparams(CELL, {"data_folder": "/x", "n_speakers": 5})
    assert optimizer_class(h["opt_class"], False) is h["opt_class"]
    torch.manual_seed(0)
    ref = torch.nn.Linear(8, 4)
    results = {}
    for fused in (False, True):
        model = copy.deepcopy(ref)
        opt = optimizer_class(h["opt_class"], fused)(model.parameters())
        assert bool(opt.param_groups[0]["fused"]) is fused
        for _ in range(3):
            model(torch.ones(2, 8)).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
        results[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    # the fused kernel computes Adam's update in another order: float rounding only
    torch.testing.assert_close(results[True], results[False], rtol=1e-5, atol=1e-6)


def test_fused_optimizer_refuses_an_optimiser_without_fused():
    with pytest.raises(HparamsError, match="fused_optimizer=True"):
        optimizer_class(functools.partial(torch.optim.RMSprop, lr=0.1), True)


@pytest.mark.slow
def test_compiled_embedder_trains_as_the_eager_one():
    """Three training steps of the x-vector cell (MFCC + TDNN + AAM softmax, Adam at its lr),
    compiled through train.py's switch and SpeechBrain's Brain._compile, against eager.

    Inductor fuses and reorders float32 arithmetic, so the losses agree to rounding, not
    bit for bit: the first step (identical weights) to 1e-5; after that Adam's first updates
    (about lr x sign of the gradient) amplify rounding in near-zero gradients, so the
    following steps to 1e-3 -- still far below the loss's change from one step to the
    next (> 5% here), which a wrong compiled graph would show."""
    import torch._inductor.config as inductor_config

    torch.set_num_threads(1)
    h = load_hparams(CELL, {"data_folder": "/x", "n_speakers": 5})
    wavs, lens = torch.randn(4, 8000), torch.ones(4)
    labels = torch.arange(4)[:, None]
    losses = {}
    for compiled in (False, True):
        mods = {"embedder": copy.deepcopy(h["embedder"]),
                "classifier": copy.deepcopy(h["classifier"])}
        args = ["--compile_embedder=true"] if compiled else []
        brain = brain_for(args, mods)
        assert isinstance(brain.modules.embedder, OptimizedModule) is compiled
        opt = h["opt_class"]([p for m in mods.values() for p in m.parameters()])
        torch.manual_seed(1)  # the x-vector's StatisticsPooling draws noise in training
        out = []
        with inductor_config.patch(fallback_random=True):  # eager's RNG in compiled code
            for _ in range(3):
                emb = brain.modules.embedder(wavs, lens)
                loss = h["loss"](brain.modules.classifier(emb.unsqueeze(1)).float(), labels)
                loss.backward()
                opt.step()
                opt.zero_grad()
                out.append(loss.item())
        losses[compiled] = out
    eager, compiled = losses[False], losses[True]
    assert compiled[0] == pytest.approx(eager[0], rel=1e-5)
    assert compiled[1:] == pytest.approx(eager[1:], rel=1e-3)
    assert abs(eager[1] - eager[0]) > 0.05 * eager[0]
