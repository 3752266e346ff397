"""From a trained embedder to scores: embeddings, metrics, AS-norm, calibration, DET curves,
evaluation, verification, embedding lists of recordings."""
