"""Ordinary mistakes get one line, ``error: ...`` naming the value, and exit status 2 (130
for Ctrl-C), never a traceback.

The recipes turn these errors into that line in their ``__main__``, so they run as
subprocesses; they fail before any training, in seconds. lowres's commands return their
exit status from ``main``, so they run in process."""

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from test_train_resume import checkpoints, ckpt_step, train_args
from tiny_run import make_run

from lowres.export.__main__ import main as export_main
from lowres.io.hparams import HparamsError, check_keys, load_hparams
from lowres.io.outputs import OutputPathError, check_output_file, check_output_folder
from lowres.scoring.embed_wav_list import main as embed_main
from lowres.scoring.verify import main as verify_main
from lowres.study.grids.runner import main as grid_main
from lowres.study.grids.runs import expand, expand_experiments
from lowres.training.runs import ResumableBrain, _remember_ctrl_c

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "VoxCeleb"
HPARAMS = ROOT / "hparams"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def recipe(script: str, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPES / script), *map(str, args)],
                          capture_output=True, text=True, env={**ENV, **(env or {})},
                          timeout=timeout)


def error_line(stderr: str) -> str:
    """The last line of stderr, which must be the whole error: no traceback before it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    line = stderr.rstrip().splitlines()[-1]
    assert line.startswith("error: "), stderr[-3000:]
    return line


def assert_recipe_error(proc: subprocess.CompletedProcess, *texts: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    for text in texts:
        assert text in line, line


def assert_main_error(capsys, code: int, *texts: str) -> None:
    assert code == 2
    line = error_line(capsys.readouterr().err)
    for text in texts:
        assert text in line, line


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run")


# ---- an output path under a file --------------------------------------------------------

@pytest.mark.parametrize("script, hparams, data", [
    ("train.py", "xvector_tiny_few.yaml", "data_folder"),
    ("pretrain.py", "pretrain/wav2vec2_tiny.yaml", "train_audio")])
def test_recipes_refuse_a_file_as_output_folder(script, hparams, data, a_file, tmp_path):
    proc = recipe(script, HPARAMS / hparams, f"--output_folder={a_file}", "--device=cpu",
                  f"--{data}={tmp_path}")
    assert_recipe_error(proc, f"output_folder {a_file}: {a_file} is a file, not a folder")


def test_embed_refuses_an_output_under_a_file_before_embedding(run, a_file, tmp_path,
                                                                capsys):
    wav_list = tmp_path / "list.txt"
    wav_list.write_text("missing.wav\n")
    code = embed_main([str(run), "--wav_list", str(wav_list), "--out", str(a_file / "x.npz"),
                       "--noprogressbar"])
    assert_main_error(capsys, code, f"--out {a_file / 'x.npz'}: {a_file} is a file")
    assert not list(tmp_path.glob("*.failed.txt"))


def test_export_refuses_outputs_under_a_file(run, a_file, capsys):
    code = export_main([str(run), "--onnx", str(a_file / "x.onnx")])
    assert_main_error(capsys, code, f"--onnx {a_file / 'x.onnx'}: {a_file} is a file")
    code = export_main([str(run), "--out", str(a_file / "model")])
    assert_main_error(capsys, code, f"--out {a_file / 'model'}: {a_file} is a file")


def test_output_checks(a_file, tmp_path, monkeypatch):
    check_output_folder(tmp_path / "new" / "deeper", "--out")  # made later: fine
    check_output_file(tmp_path / "new" / "x.npz", "--out")
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path, "--out")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputPathError, match=f"--out {tmp_path / 'new'}: {tmp_path} is not "
                                              "writable"):
        check_output_folder(tmp_path / "new", "--out")


# ---- a GPU that is not there ------------------------------------------------------------

NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize("script, hparams", [("train.py", "xvector_tiny_few.yaml"),
                                             ("pretrain.py", "pretrain/wav2vec2_tiny.yaml"),
                                             ("eval.py", "xvector_tiny_few.yaml")])
def test_recipes_refuse_a_cuda_device_without_gpu(script, hparams, tmp_path):
    proc = recipe(script, HPARAMS / hparams, f"--output_folder={tmp_path / 'out'}",
                  "--device=cuda", env=NO_GPU)
    assert_recipe_error(proc, "--device cuda: no CUDA device is visible")


def test_embed_and_verify_refuse_a_cuda_device_without_gpu(run, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    wav_list = tmp_path / "list.txt"
    wav_list.write_text("a.wav\n")
    code = embed_main([str(run), "--wav_list", str(wav_list), "--out",
                       str(tmp_path / "x.npz"), "--device", "cuda:0"])
    assert_main_error(capsys, code, "--device cuda:0: no CUDA device is visible")
    code = verify_main([str(run), "a.wav", "b.wav", "--device", "cuda"])
    assert_main_error(capsys, code, "--device cuda: no CUDA device is visible")
    code = verify_main([str(run), "a.wav", "b.wav", "--device", "gpu"])
    assert_main_error(capsys, code, "--device gpu: not a device")


# ---- a wav2vec2_source that cannot be loaded --------------------------------------------

@pytest.mark.parametrize("source, env", [
    ("{tmp}/no_such_model", {}),
    ("facebook/wav2vec2-base", {"HF_HUB_OFFLINE": "1"}),  # an empty cache (HF_HOME below)
])
def test_unloadable_wav2vec2_source_says_how_to_get_it(source, env, prepared_manifests,
                                                       tmp_path):
    source = source.format(tmp=tmp_path)
    proc = recipe("train.py", HPARAMS / "wav2vec2_tiny_few.yaml",
                  f"--manifest_folder={prepared_manifests}", f"--output_folder={tmp_path / 'o'}",
                  f"--wav2vec2_source={source}", "--device=cpu", "--max_steps=24",
                  env={**env, "HF_HOME": str(tmp_path / "hf")})
    assert_recipe_error(proc, f"invalid hparam wav2vec2_source={source!r}: cannot be loaded",
                        "huggingface-cli download", "--local-dir D", "--wav2vec2_source D",
                        "HF_HUB_OFFLINE=1")


# ---- a mistyped key ---------------------------------------------------------------------

def test_a_mistyped_hparam_suggests_the_closest_keys(tmp_path):
    proc = recipe("train.py", HPARAMS / "xvector_tiny_few.yaml", "--lr_shedule", "constant",
                  f"--output_folder={tmp_path}", "--device=cpu")
    assert_recipe_error(proc, "unknown hparam 'lr_shedule'", "did you mean 'lr_schedule'")
    assert len(error_line(proc.stderr)) < 200  # not every key of the file
    with pytest.raises(HparamsError, match="did you mean 'max_steps'"):
        load_hparams(HPARAMS / "xvector_tiny_few.yaml", {"max_step": 3})
    with pytest.raises(HparamsError, match="'zzzz' .*no key has a similar name"):
        check_keys(["lr", "zzzz"], ["lr", "max_steps"], "x.yaml")


def test_grid_overrides_must_name_keys_of_each_runs_file(capsys):
    with pytest.raises(SystemExit) as exit_info:
        grid_main(["list", "naive_lr", "--model", "xvector", "--set", "lr_shedule=1"])
    assert_main_error(capsys, exit_info.value.code, "unknown hparam 'lr_shedule'",
                      "did you mean 'lr_schedule'")
    with pytest.raises(HparamsError, match="num_frozen_steps"):  # wav2vec2's key only
        expand("naive_lr", models=["xvector"], extra={"num_frozen_steps": "3"})
    assert expand("naive_lr", models=["wav2vec2"], extra={"num_frozen_steps": "3"})
    assert expand("naive_lr", models=["xvector"], extra={"device": "cpu"})  # a run option
    # checked against the experiment's own file, which has keys its model's cell lacks
    runs = expand_experiments(["ssl_ecapa_tiny_few"], "naive_lr",
                              extra={"ssl_ecapa_channels": "64"})
    assert runs and {r.hparams_file for r in runs} == {"hparams/ssl_ecapa_tiny_few.yaml"}


# ---- no data_folder ---------------------------------------------------------------------

def test_train_without_data_folder_says_it_is_required(tmp_path):
    proc = recipe("train.py", HPARAMS / "xvector_tiny_few.yaml",
                  f"--output_folder={tmp_path / 'out'}", "--device=cpu")
    assert_recipe_error(proc, "data_folder or manifest_folder is required", "--data_folder DIR")
    assert "None/manifests" not in proc.stderr


# ---- Ctrl-C -----------------------------------------------------------------------------

def test_a_ctrl_c_lost_in_a_finaliser_stops_the_run_at_the_next_batch():
    """Python drops a KeyboardInterrupt raised inside ``__del__`` (a Ctrl-C that lands
    while a finaliser runs): training must still stop at the end of the next batch."""
    brain = types.SimpleNamespace(ctrl_c=False)
    before = signal.getsignal(signal.SIGINT)

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    with _remember_ctrl_c(brain):
        Finaliser()  # collected at once: the KeyboardInterrupt of its __del__ is dropped
    assert brain.ctrl_c
    with pytest.raises(KeyboardInterrupt):
        ResumableBrain.on_fit_batch_end(brain, None, None, None, True)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_says_where_the_run_resumes(prepared_manifests, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *train_args(prepared_manifests, out,
                                                         "--max_steps=1000")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not checkpoints(out):
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    step = max(ckpt_step(c) for c in checkpoints(out))
    assert stderr.rstrip().splitlines()[-1] == (
        f"interrupted: run the same command again to resume {out} from its checkpoint at "
        f"step {step}")
