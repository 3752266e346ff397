"""Every ``!new:`` / ``!name:`` / ``!apply:`` path of ours that a shipped hparams file names
imports: run folders keep those paths in their saved hyperparams.yaml, so a module that
moves must leave them working."""

import importlib
import re

import pytest
from conftest import ROOT

_TAG = re.compile(r"!(?:new|name|apply):(lowres\.[\w.]+)")
PATHS = sorted({m for f in (ROOT / "hparams").rglob("*.yaml")
                for m in _TAG.findall(f.read_text(encoding="utf-8"))})


def test_the_hparams_files_name_paths_of_ours():
    assert "lowres.models.MfccEmbedder" in PATHS


@pytest.mark.parametrize("path", PATHS)
def test_path_imports(path):
    module, name = path.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
