"""How much speaker information does a wav2vec2-style checkpoint hold before any labels?

    python benchmarks/ssl_layer_probe.py MODEL_FOLDER [MODEL_FOLDER ...]
        --manifest_folder DATA/manifests [--test original]

For each checkpoint (a save_pretrained folder: pretrain.py's OUT/pretrained, a random
one from lowres.tiny_wav2vec2, a hub download), embeds every file of the test set's
trials whole, and prints the EER (%) of cosine scores on that set for each layer's
frames pooled by their mean ("m") and by mean and standard deviation ("ms"): the CNN's
output (``cnn``) and every hidden state (``h0`` = the transformer's input). No training,
no classifier: a layer that scores better than a random model's holds speaker (or
channel) information that self-supervised pre-training put there, which fine-tuning
with a frozen CNN (the study's recipe) has to build on. The embeddings are centred on
their mean before the cosine, as a trained model's would not need.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lowres.io.audio import load_audio  # noqa: E402
from lowres.io.lists import read_manifest, read_trials  # noqa: E402
from lowres.models.wav2vec2 import normalise_waveform  # noqa: E402
from lowres.scoring.metrics import eer  # noqa: E402
from lowres.scoring.trials import score_trials  # noqa: E402


def layer_embeddings(folder: str, wavs: dict[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    """{pooled layer name: {file id: embedding}} of checkpoint ``folder``."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    out: dict[str, dict[str, torch.Tensor]] = {}
    with torch.no_grad():
        for uid, path in wavs.items():
            sig = load_audio(path)[None]
            x, _ = normalise_waveform(sig, torch.tensor([sig.shape[1]]))
            res = model(x, output_hidden_states=True)
            layers = {"cnn": res.extract_features[0],
                      **{f"h{i}": h[0] for i, h in enumerate(res.hidden_states)}}
            for name, frames in layers.items():
                out.setdefault(f"{name}_m", {})[uid] = frames.mean(0)
                out.setdefault(f"{name}_ms", {})[uid] = torch.cat([frames.mean(0),
                                                                   frames.std(0)])
    return out


def centred(embeddings: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    unit = {u: F.normalize(e, dim=0) for u, e in embeddings.items()}
    mean = torch.stack(list(unit.values())).mean(0)
    return {u: e - mean for u, e in unit.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="save_pretrained folders")
    p.add_argument("--manifest_folder", type=Path, required=True,
                   help="prepare.voxceleb's output (its test/<test>.csv and _trials.txt)")
    p.add_argument("--test", default="original", help="test set (default original)")
    args = p.parse_args(argv)
    test = args.manifest_folder / "test"
    trials = read_trials(test / f"{args.test}_trials.txt")
    needed = set(trials.id1) | set(trials.id2)
    manifest = read_manifest(test / f"{args.test}.csv")
    wavs = {u: w for u, w in zip(manifest.ID, manifest.wav, strict=True) if u in needed}
    print(f"{args.test}: {len(trials)} trials, {len(wavs)} files; EER % per pooled layer")
    for folder in args.models:
        layers = layer_embeddings(folder, wavs)
        figures = []
        for name, embeddings in layers.items():
            scores, labels = score_trials(centred(embeddings), trials)
            figures.append(f"{name} {100 * eer(scores, labels).eer:.1f}")
        print(f"{folder}: " + ", ".join(figures), flush=True)


if __name__ == "__main__":
    main()
