"""Speaker embedders: MFCC front-end, x-vector / ECAPA-TDNN (``xvector_ecapa``), wav2vec2,
freezing, MHFA pooling of an SSL model's layers (``mhfa``).

``lowres.models.MfccEmbedder`` and ``lowres.models.Wav2vec2Embedder`` are the names the
hparams files build (``!new:``); they are imported on first use, so importing the
package does not load transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"MfccEmbedder": "lowres.models.xvector_ecapa",
            "Wav2vec2Embedder": "lowres.models.wav2vec2"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
