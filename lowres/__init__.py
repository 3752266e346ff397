"""lowres: speaker recognition with limited data (Vaessen & van Leeuwen, Interspeech 2022).

The library is grouped by role:

- ``lowres.io``: file formats every stage shares (atomic writes, manifests and trial
  lists, the hparams loader); ``prepare`` imports these too.
- ``lowres.models``: MFCC front-end, x-vector / ECAPA-TDNN and wav2vec2 embedders, freezing.
- ``lowres.data``: training and validation data pipelines over the manifests.
- ``lowres.training``: what the recipes wire beyond SpeechBrain's ``Brain``: LR schedules,
  run bookkeeping, train.py's Brain, hparams checks, manifests and loaders, pre-training.
- ``lowres.scoring``: metrics, score normalisation, calibration, DET curves, embeddings,
  evaluation, the SpeakerVerifier, embeddings of any wav list.
- ``lowres.study``: the experiment grids, results tables and figures, the demo.

The modules directly in ``lowres/`` (``grid``, ``results``, ``verify``, ``embed``, ``demo``,
``tiny_wav2vec2``) are command-line entry points, as is the package ``lowres.export``:
``python -m lowres.grid ...``.
"""
