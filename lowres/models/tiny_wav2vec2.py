"""Write a randomly initialised wav2vec2 to a local folder, for offline runs and tests.

    python -m lowres.tiny_wav2vec2 --out DIR [--size tiny|base] [--seed 0]

``tiny``: 2 transformer layers of width 128 and a 5-layer 64-channel CNN with the same total
stride (320 samples = 20 ms per frame) as the real model, so the recipe's wav2vec2 path runs in
seconds on a CPU. ``base``: the facebook/wav2vec2-base architecture (12 layers, 768 hidden,
3072 FFN, 12 heads, 7-layer 512-channel group-norm CNN, 128-wide positional conv in 16
groups) with random weights: same memory and speed as the real checkpoint, no download.
The folder loads with ``Wav2Vec2Model.from_pretrained(DIR)`` or as ``wav2vec2_source``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

SIZES = ("tiny", "base")


def wav2vec2_config(size: str = "tiny") -> Wav2Vec2Config:
    """Architecture of the ``tiny`` test model or of facebook/wav2vec2-base."""
    if size == "base":
        return Wav2Vec2Config(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
            conv_dim=(512,) * 7,
            conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            conv_stride=(5, 2, 2, 2, 2, 2, 2),
            conv_bias=False,
            num_conv_pos_embeddings=128,
            num_conv_pos_embedding_groups=16,
            mask_time_prob=0.05,
            mask_time_length=10,
            architectures=["Wav2Vec2ForPreTraining"],
        )
    if size == "tiny":
        return Wav2Vec2Config(
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
            conv_dim=(64,) * 5,
            conv_kernel=(10, 3, 3, 2, 2),
            conv_stride=(5, 4, 4, 2, 2),
            conv_bias=False,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            mask_time_prob=0.05,
            mask_time_length=10,
            architectures=["Wav2Vec2Model"],
        )
    raise ValueError(f"size {size!r} is unknown; valid: {', '.join(SIZES)}")


def save_tiny_wav2vec2(folder, size: str = "tiny", seed: int = 0) -> Path:
    """Write a randomly initialised Wav2Vec2Model of ``size`` to ``folder`` (save_pretrained)."""
    config = wav2vec2_config(size)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write (config.json + weights)")
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = save_tiny_wav2vec2(args.out, size=args.size, seed=args.seed)
    print(f"wrote a random {args.size} wav2vec2 to {folder}")


if __name__ == "__main__":
    main()
