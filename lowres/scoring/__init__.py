"""From a trained embedder to scores: embeddings, metrics, AS-norm, evaluation, verification."""
