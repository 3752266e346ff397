"""Shared fixtures: one small synthetic corpus and its manifests per test session.

Both are built through the public CLIs, so every test that uses them also
exercises the commands a user runs.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# `make test` runs the suite in pytest-xdist workers: each takes its share of the cores
# (set before any test imports torch; subprocesses inherit it) rather than all of them.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(
        1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def pytest_collection_modifyitems(items):
    """The longest test, then the slow ones, first: with several workers (``--dist
    worksteal``) the critical path starts at once and the short tests fill the others."""
    items.sort(key=lambda item: (item.get_closest_marker("longest") is None,
                                 item.get_closest_marker("slow") is None))

# The seed of the trained runs whose EERs the slow tests compare. Unset (as in CI), the
# recipes' own seeds; set it (``LOWRES_TEST_SEED=7 make test``) to measure how far the
# asserted margins move with the seed, the spread the margins are chosen against.
TEST_SEED = os.environ.get("LOWRES_TEST_SEED")


# Subset budgets scaled to the "small" synthetic preset (see prepare/synthetic.py).
SMALL_PREPARE_ARGS = [
    "--few_speakers_per_gender", "4",
    "--val_trials_full", "400",
    "--val_trials_tiny", "200",
    "--val_fraction", "0.1",
]


def run_module(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m module args` and fail the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"python -m {module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_script(path: Path, name: str):
    """Import a script that is not in a package (benchmarks/, recipes/) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """A small VoxCeleb-shaped corpus (preset 'small', seed 0)."""
    out = tmp_path_factory.mktemp("corpus")
    run_module("prepare.synthetic", "--out", out, "--preset", "small", "--seed", "0")
    return out


@pytest.fixture(scope="session")
def prepared_manifests(synthetic_corpus, tmp_path_factory) -> Path:
    """Manifests, subsets and trials of the small corpus (prepare.voxceleb)."""
    save = tmp_path_factory.mktemp("manifests")
    run_module(
        "prepare.voxceleb", "--data_folder", synthetic_corpus, "--save_folder", save,
        "--jobs", "2", *SMALL_PREPARE_ARGS,
    )
    return save


# A tiny wav2vec2 checkpoint whose own regularisation values differ from every preset
# value of the study, so each module's rate tells whether it came from the checkpoint or
# from the preset (the regularisation tests and the pinned published defaults).
CKPT = {"attention_dropout": 0.11, "hidden_dropout": 0.12, "activation_dropout": 0.13,
        "feat_proj_dropout": 0.14, "layerdrop": 0.15, "mask_time_prob": 0.16,
        "mask_time_length": 3, "mask_feature_prob": 0.17, "mask_feature_length": 5}


@pytest.fixture(scope="session")
def own_config(tmp_path_factory) -> Path:
    """The tiny wav2vec2 checkpoint with CKPT's regularisation values."""
    from transformers import Wav2Vec2Config

    from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2

    folder = save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v2") / "own", seed=0)
    config = Wav2Vec2Config.from_pretrained(folder)
    for key, value in CKPT.items():
        setattr(config, key, value)
    config.save_pretrained(folder)
    return folder
