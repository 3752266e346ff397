"""LoRA and bottleneck adapters on the SSL backbone: HuggingFace peft and lowres's adapters
(lowres.models.ssl_adaptation) against SpeechBrain's ``speechbrain.nnet.adapters``.

    python benchmarks/ssl_adaptation.py [--size tiny|base] [--batch 4] [--seconds 2]
                                        [--repeats 20]

On a random checkpoint of each family (lowres.models.tiny_wav2vec2), each method on the
same modules (LoRA: rank 8, alpha 16 on ``q_proj`` and ``v_proj``; adapters: bottleneck 64
after each layer's attention and feed-forward block, SpeechBrain's ``HoulsbyAdapterLinear``
around ``attention.out_proj`` and ``feed_forward.output_dense``), prints:

* ``acts``: with the added up-projections made non-zero, the embedding moves away from the
  unadapted model's and every added weight gets a gradient (``no effect``: the backbone
  never calls the wrapped module; ``error``: the forward fails);
* ``starts as``: the largest difference from the unadapted embedding at initialisation
  (0: the adapted backbone starts as the pre-trained one);
* the name an original weight and an added weight take in the backbone's state_dict;
* ``merged``: the largest difference between the embeddings with LoRA and with LoRA folded
  into the weights (lowres: ``merge_adaptation``, i.e. peft's ``merge``; SpeechBrain has no
  merge, so here ``W + scaling * up @ down`` by hand);
* the median milliseconds of one forward + backward in training mode (1 thread), with
  full fine-tuning and a frozen backbone for reference.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lowres.models.ssl_adaptation import ADAPTER, add_adapters, merge_adaptation  # noqa: E402
from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402
from lowres.models.wav2vec2 import Wav2vec2Embedder  # noqa: E402

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec_audio")
TARGETS = ("q_proj", "v_proj")
HOULSBY_TARGETS = ("attention.out_proj", "feed_forward.output_dense")
RANK, ALPHA, BOTTLENECK = 8, 16, 64


def _modules(backbone, suffixes) -> list[str]:
    return [name for name, _ in backbone.named_modules()
            if name.startswith("encoder.layers.") and name.endswith(suffixes)]


def peft_lora(backbone) -> None:
    """peft on ``TARGETS``, as lowres.models.ssl_adaptation.add_lora, without its refusal
    of WavLM's attention projections."""
    import peft

    backbone.requires_grad_(False)
    peft.inject_adapter_in_model(
        peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=_modules(backbone, TARGETS)),
        backbone)


def speechbrain_lora(backbone) -> None:
    from speechbrain.nnet.adapters import LoRA, replace_module

    backbone.requires_grad_(False)
    for name in _modules(backbone, TARGETS):
        replace_module(backbone, name, LoRA(backbone.get_submodule(name), RANK, ALPHA))


def lowres_adapters(backbone) -> None:
    backbone.requires_grad_(False)
    add_adapters(backbone, BOTTLENECK)


def speechbrain_houlsby(backbone) -> None:
    from speechbrain.nnet.adapters import HoulsbyAdapterLinear, replace_module

    backbone.requires_grad_(False)
    for name in _modules(backbone, HOULSBY_TARGETS):
        replace_module(backbone, name,
                       HoulsbyAdapterLinear(backbone.get_submodule(name), BOTTLENECK))


def speechbrain_merge(backbone) -> None:
    """SpeechBrain's LoRA folded into its wrapped Linear, which takes its place again."""
    from speechbrain.nnet.adapters import replace_module

    for name in _modules(backbone, TARGETS):
        lora = backbone.get_submodule(name)
        linear = lora.pretrained_module
        with torch.no_grad():
            linear.weight += lora.scaling * lora.adapter_up_proj.weight \
                @ lora.adapter_down_proj.weight
        replace_module(backbone, name, linear)


METHODS = {"lora peft": peft_lora, "lora speechbrain": speechbrain_lora,
           "adapter lowres": lowres_adapters, "adapter speechbrain": speechbrain_houlsby}
UP = ("lora_B", "adapter_up_proj", f"{ADAPTER}.up")  # the zero-started weight of each


def build(folder: Path, method: str | None) -> Wav2vec2Embedder:
    """An embedder with ``method`` (or ``frozen``: ``ssl_adaptation: frozen``; None: as
    loaded, which ``full`` fine-tunes)."""
    torch.manual_seed(0)
    emb = Wav2vec2Embedder(str(folder), regularisation="none", regularisation_as_published=False,
                           adaptation="frozen" if method == "frozen" else "full")
    if method in METHODS:
        METHODS[method](emb.wav2vec2)
    return emb


def added(emb) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in emb.wav2vec2.named_parameters() if p.requires_grad}


def embed(emb, wavs) -> torch.Tensor:
    with torch.no_grad():
        return emb.eval()(wavs)


def step_ms(embedders: dict[str, Wav2vec2Embedder], wavs, repeats: int) -> dict[str, float]:
    """Median ms of a forward + backward of each embedder, taken in turns (a shared
    machine's drift falls on all alike)."""
    heads = {name: torch.nn.Linear(emb.embedding_dim, 1) for name, emb in embedders.items()}
    times: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(repeats):
        for name, emb in embedders.items():
            emb.train()
            start = time.perf_counter()
            heads[name](emb(wavs)).sum().backward()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def check(folder: Path, method: str, wavs) -> dict[str, str]:
    """acts / starts as / key names / merged of ``method`` on ``folder``'s backbone."""
    reference = embed(build(folder, None), wavs)
    try:
        emb = build(folder, method)
        start = embed(emb, wavs)
    except AttributeError as err:
        return {"acts": f"error ({err})"}
    row = {"starts as": f"{(start - reference).abs().max():.1e}"}
    weights = added(emb)
    row["added key"] = next(iter(weights))
    row["original key"] = next(n for n in emb.wav2vec2.state_dict()
                               if "q_proj" in n and "weight" in n and n not in weights)
    with torch.no_grad():
        for name, p in weights.items():
            if any(up in name for up in UP):
                p.normal_(0, 0.1)
    try:
        moved = (embed(emb, wavs) - reference).abs().max()
        emb.train().zero_grad()
        emb(wavs).square().sum().backward()
    except RuntimeError:  # nothing that requires a gradient was used
        return {**row, "acts": "no effect"}
    except AttributeError as err:
        return {**row, "acts": f"error ({err})"}
    graded = all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights.values())
    row["acts"] = "yes" if moved > 1e-4 and graded else "no effect"
    if method.startswith("lora") and row["acts"] == "yes":
        lora = embed(emb, wavs)
        if method == "lora peft":
            emb.wav2vec2 = merge_adaptation(emb)
        else:
            speechbrain_merge(emb.wav2vec2)
        row["merged"] = f"{(embed(emb, wavs) - lora).abs().max():.1e}"
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("tiny", "base"), default="tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft on transformers 4
    wavs = 0.3 * torch.randn(args.batch, int(16000 * args.seconds),
                             generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            folder = save_tiny_wav2vec2(Path(tmp) / family, size=args.size, family=family)
            print(f"\n{family} ({args.size}), batch {args.batch} x {args.seconds:g} s")
            rows = {method: check(folder, method, wavs) for method in METHODS}
            timed = ["full", "frozen", *(m for m, row in rows.items() if row["acts"] == "yes")]
            embedders = {m: build(folder, None if m == "full" else m) for m in timed}
            ms = step_ms(embedders, wavs, args.repeats)
            for method in timed[:2]:
                print(f"  {method:20s} {ms[method]:8.1f} ms")
            for method, row in rows.items():
                timing = ""
                if method in ms:
                    n = sum(p.numel() for p in added(embedders[method]).values())
                    timing = f"{ms[method]:8.1f} ms, {n:,} weights"
                print(f"  {method:20s} {timing}")
                for key, value in row.items():
                    print(f"      {key}: {value}")


if __name__ == "__main__":
    main()
