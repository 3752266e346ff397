"""lowres: speaker recognition with limited data (Vaessen & van Leeuwen, Interspeech 2022).

The library is grouped by role:

- ``lowres.io``: file formats every stage shares (atomic writes, manifests and trial
  lists, the hparams loader); ``prepare`` imports these too.
- ``lowres.models``: MFCC front-end, x-vector / ECAPA-TDNN and wav2vec2 embedders, freezing.
- ``lowres.data``: training and validation data pipelines over the manifests.
- ``lowres.training``: LR schedules and what train.py needs beyond SpeechBrain's ``Brain``.
- ``lowres.scoring``: metrics, score normalisation, calibration, DET curves, embeddings,
  evaluation, the SpeakerVerifier, embeddings of any wav list.
- ``lowres.study``: the experiment grids, results tables and figures, the demo.

The modules directly in ``lowres/`` (``grid``, ``results``, ``verify``, ``embed``, ``demo``,
``tiny_wav2vec2``) are command-line entry points, as is the package ``lowres.export``:
``python -m lowres.grid ...``.
"""
