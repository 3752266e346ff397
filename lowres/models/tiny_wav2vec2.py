"""Write a randomly initialised audio SSL model to a local folder, for offline runs and tests.

    python -m lowres.tiny_wav2vec2 --out DIR [--family F] [--size tiny|base] [--norm group|layer]
                                   [--seed 0]

``--family`` (default ``wav2vec2``, a bare ``Wav2Vec2Model`` as before) picks the model class
and so the layout of the saved weights; the others are saved as the hub saves the family's
published checkpoints:

- ``wav2vec2_pretraining``: ``Wav2Vec2ForPreTraining`` (facebook/wav2vec2-base, the large /
  XLS-R ones): backbone keys under ``wav2vec2.``, plus the quantizer, ``project_q`` and
  ``project_hid`` of the contrastive objective;
- ``hubert``: ``HubertModel`` (facebook/hubert-base-ls960); ``wavlm``: ``WavLMModel``
  (microsoft/wavlm-base-plus, with its gated relative position bias);
  ``data2vec_audio``: ``Data2VecAudioModel`` (facebook/data2vec-audio-base).

``tiny``: 2 transformer layers of width 128 and a 5-layer 64-channel CNN with the same total
stride (320 samples = 20 ms per frame) as the real models, so the recipe's SSL path runs in
seconds on a CPU. ``base``: the base architecture (12 layers, 768 hidden, 3072 FFN, 12 heads,
7-layer 512-channel CNN, the family's positional convolution) with random weights: same
memory and speed as the real checkpoint, no download. ``--norm layer``: the layer-norm CNN
and pre-norm transformer (``do_stable_layer_norm``) of the large / XLS-R checkpoints;
data2vec-audio has only that one. The folder loads as ``wav2vec2_source``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

SIZES = ("tiny", "base")
NORMS = ("group", "layer")

#: family -> (config class, the model class its hub checkpoints are saved as)
FAMILIES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "wav2vec2_pretraining": (Wav2Vec2Config, Wav2Vec2ForPreTraining),
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
    "data2vec_audio": (Data2VecAudioConfig, Data2VecAudioModel),
}

_ARCHITECTURE = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "conv_dim": (512,) * 7,
             "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2)},
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 256, "conv_dim": (64,) * 5, "conv_kernel": (10, 3, 3, 2, 2),
             "conv_stride": (5, 4, 4, 2, 2)},
}
# positional convolution: one weight-normed conv (wav2vec2, HuBERT, WavLM) or data2vec's
# stack of plain convs (its published base: 5 layers of kernel 19 in 16 groups)
_POSITIONAL = {
    "base": {"num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16},
    "tiny": {"num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4},
}
_DATA2VEC_POSITIONAL = {
    "base": {"num_conv_pos_embeddings": 5, "conv_pos_kernel_size": 19,
             "num_conv_pos_embedding_groups": 16},
    "tiny": {"num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5,
             "num_conv_pos_embedding_groups": 4},
}


def ssl_config(family: str = "wav2vec2", size: str = "tiny", norm: str | None = None
               ) -> PretrainedConfig:
    """Architecture of the ``tiny`` test model or of the family's base checkpoint; ``norm``
    None: the base's CNN norm (group; data2vec-audio: layer, its only one)."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is unknown; valid: {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise ValueError(f"size {size!r} is unknown; valid: {', '.join(SIZES)}")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"norm {norm!r} is unknown; valid: {', '.join(NORMS)}")
    config_class, model_class = FAMILIES[family]
    values = {**_ARCHITECTURE[size], "conv_bias": False, "mask_time_prob": 0.05,
              "mask_time_length": 10, "architectures": [model_class.__name__]}
    if family == "data2vec_audio":
        if norm == "group":
            raise ValueError("data2vec_audio has a layer-norm CNN only (norm layer)")
        values.update(_DATA2VEC_POSITIONAL[size])
    else:
        norm = norm or "group"
        values.update(_POSITIONAL[size], feat_extract_norm=norm,
                      do_stable_layer_norm=norm == "layer")
    return config_class(**values)


def wav2vec2_config(size: str = "tiny") -> Wav2Vec2Config:
    """Architecture of the ``tiny`` test model or of facebook/wav2vec2-base."""
    config = ssl_config("wav2vec2", size)
    if size == "base":
        config.architectures = ["Wav2Vec2ForPreTraining"]
    return config


def save_tiny_wav2vec2(folder, size: str = "tiny", seed: int = 0, family: str = "wav2vec2",
                       norm: str | None = None) -> Path:
    """Write a randomly initialised model of ``family`` and ``size`` to ``folder``
    (save_pretrained, in the layout of the family's hub checkpoints)."""
    config = ssl_config(family, size, norm)
    if (family, size, norm) == ("wav2vec2", "base", None):
        config = wav2vec2_config(size)  # the architectures field of the published base
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    FAMILIES[family][1](config).save_pretrained(folder)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write (config.json + weights)")
    parser.add_argument("--family", choices=list(FAMILIES), default="wav2vec2",
                        help="model class and weight layout (default: a bare Wav2Vec2Model)")
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--norm", choices=NORMS,
                        help="CNN norm: group (the base's default) or layer (+ pre-norm "
                        "transformer: large, XLS-R); data2vec_audio has layer only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = save_tiny_wav2vec2(args.out, size=args.size, seed=args.seed, family=args.family,
                                norm=args.norm)
    print(f"wrote a random {args.size} {args.family} ({FAMILIES[args.family][1].__name__}) "
          f"to {folder}")


if __name__ == "__main__":
    main()
