"""How the SSL backbone of ``Wav2vec2Embedder`` adapts to speakers (yaml ``ssl_adaptation``).

- ``full`` (the study): every backbone weight fine-tunes (the CNN too unless
  ``completely_freeze_feature_extractor``), under the freeze schedule (lowres.models.freeze).
- ``frozen``: no backbone weight trains; the backbone runs under ``torch.no_grad`` in eval
  mode throughout (``set_backbone_frozen(True)``; the freeze schedule never unfreezes it), so
  only what follows it trains (layer weights, back-end, classifier).
- ``lora``: LoRA (Hu et al., 2021) on linear maps of the transformer layers: ``W x`` becomes
  ``W x + (alpha / rank) B A dropout(x)``, ``A`` random, ``B`` zero (the adapted backbone
  starts as the pre-trained one); keys ``lora_rank``, ``lora_alpha``, ``lora_dropout``,
  ``lora_target_modules`` (default ``q_proj``, ``v_proj``: names as in the attention modules
  of all four families). Built with HuggingFace peft (``inject_adapter_in_model``), which
  wraps each target in a ``lora.Linear``: a target's weight is then
  ``<target>.base_layer.weight``, its LoRA factors ``<target>.lora_A.default.weight`` and
  ``<target>.lora_B.default.weight``.
- ``adapter``: Houlsby-style bottleneck adapters (Houlsby et al., 2019): in each transformer
  layer, on the output of the attention block (after its output projection) and of the
  feed-forward block, each before its residual sum, ``h + up(GELU(down(h)))`` with ``down``
  to ``adapter_bottleneck`` dimensions and ``up`` zero-initialised (the adapted backbone
  starts as the pre-trained one). Unlike Houlsby et al., the layer norms stay frozen. Each
  adapter is the submodule ``bottleneck_adapter`` of the block it follows, applied by a
  forward hook, so the backbone's own weights keep their names.

In ``lora`` and ``adapter`` every original backbone weight has ``requires_grad`` False and
the backbone runs with autograd, so the added weights get gradients. The freeze schedule
(``wav2vec_initially_frozen`` / ``num_frozen_steps``) applies as in ``full``: during the
frozen steps the whole backbone, added weights included, runs under ``no_grad`` and gets no
gradient; from ``num_frozen_steps`` on (from step 0 with the schedule off) the added weights
train.

WavLM's attention passes the weights of ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``
straight to torch's ``multi_head_attention_forward`` and never calls those modules, so LoRA
cannot act on them there (peft's wrapper would be skipped silently): a WavLM backbone takes
LoRA on its other linear maps only (``gru_rel_pos_linear``, ``intermediate_dense``,
``output_dense``), and asking for those four is refused by name (``LORA_UNREACHABLE``).
The adapters sit on block outputs and work on every family.

Why peft for LoRA, and adapters of our own: SpeechBrain 1.1.2's ``speechbrain.nnet.adapters``
``LoRA`` has no dropout and no merge into the weights (export needs one); its
``HoulsbyAdapterLinear`` wraps a ``Linear`` (so it cannot follow WavLM's attention, whose
``out_proj`` is never called) and starts with a random up-projection (the adapted model is
not the pre-trained one at step 0). Speed is the same (benchmarks/ssl_adaptation.py). In
eval, an adapter of ours equals a ``HoulsbyAdapterLinear`` with GELU around the linear map
that ends its block (``out_proj``, ``output_dense``): an exported SpeechBrain folder of an
``adapter`` run is built that way, so it loads without lowres.
"""

from __future__ import annotations

import copy
import warnings

import torch
from transformers import PreTrainedModel

from lowres.io.hparams import invalid_hparam

__all__ = [
    "ADAPTATIONS",
    "ADAPTATION_KEYS",
    "ADAPTER",
    "LORA_UNREACHABLE",
    "BottleneckAdapter",
    "adapt_backbone",
    "check_adaptation",
    "lora_target_names",
    "lr_groups",
    "merge_adaptation",
    "parameter_counts",
]

ADAPTATIONS = ("full", "frozen", "lora", "adapter")
#: family (config.json model_type) -> linear maps its attention never calls (it reads their
#: weights directly), so LoRA on them would not act
LORA_UNREACHABLE = {"wavlm": ("q_proj", "k_proj", "v_proj", "out_proj")}
#: the submodule name of an adapter, inside the block whose output it adapts
ADAPTER = "bottleneck_adapter"
#: mode -> the yaml keys only it reads (hparams/shared/wav2vec2.yaml)
ADAPTATION_KEYS = {"lora": ("lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules"),
                   "adapter": ("adapter_bottleneck",)}


def _positive_int(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise invalid_hparam(key, value, "must be a positive integer")


def check_adaptation(adaptation: str, lora_rank=8, lora_alpha=16, lora_dropout=0.0,
                     lora_target_modules=("q_proj", "v_proj"), adapter_bottleneck=64) -> None:
    """Refuse (HparamsError naming the yaml key and value) an unknown ``ssl_adaptation`` or
    a bad value of a key it reads; the keys of the other modes are not read. Whether the
    target modules exist is known only with the backbone (:func:`lora_target_names`)."""
    if adaptation not in ADAPTATIONS:
        raise invalid_hparam("ssl_adaptation", adaptation,
                             f"must be one of {', '.join(ADAPTATIONS)}")
    if adaptation == "lora":
        _positive_int("lora_rank", lora_rank)
        if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) \
                or not lora_alpha > 0:
            raise invalid_hparam("lora_alpha", lora_alpha, "must be a positive number")
        if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, (int, float)) \
                or not 0 <= lora_dropout < 1:
            raise invalid_hparam("lora_dropout", lora_dropout, "must be in [0, 1)")
        if isinstance(lora_target_modules, str) or not lora_target_modules \
                or not all(isinstance(name, str) for name in lora_target_modules):
            raise invalid_hparam("lora_target_modules", lora_target_modules,
                                 "must be a non-empty list of module names, e.g. "
                                 "[q_proj, v_proj]")
    if adaptation == "adapter":
        _positive_int("adapter_bottleneck", adapter_bottleneck)


def _layer_linears(backbone: PreTrainedModel) -> dict[str, list[str]]:
    """Short name -> full names of the linear maps inside the transformer layers."""
    names: dict[str, list[str]] = {}
    for name, module in backbone.named_modules():
        if name.startswith("encoder.layers.") and isinstance(module, torch.nn.Linear):
            names.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    return names


def lora_target_names(backbone: PreTrainedModel, target_modules) -> list[str]:
    """The full names of the backbone's modules that ``lora_target_modules`` names, or an
    HparamsError that lists the valid names of this backbone (for WavLM: why its attention
    projections are not among them)."""
    family = backbone.config.model_type
    unreachable = LORA_UNREACHABLE.get(family, ())
    linears = {short: full for short, full in _layer_linears(backbone).items()
               if short not in unreachable}
    valid = ", ".join(sorted(linears))
    refused = [name for name in target_modules if name in unreachable]
    if refused:
        raise invalid_hparam(
            "lora_target_modules", list(target_modules),
            f"a {family} backbone's attention reads the weights of {', '.join(unreachable)} "
            f"directly (torch's multi_head_attention_forward) and never calls those modules, "
            f"so LoRA on {', '.join(refused)} would not act; valid for this backbone: {valid}")
    unknown = [name for name in target_modules if name not in linears]
    if unknown:
        raise invalid_hparam("lora_target_modules", list(target_modules),
                             f"{', '.join(unknown)} is no linear map of the {family} "
                             f"backbone's transformer layers; valid: {valid}")
    return [full for name in dict.fromkeys(target_modules) for full in linears[name]]


def _peft():
    """peft, imported on first use (it takes seconds), without its notice that it will
    drop transformers 4 in a later release (requirements.txt pins both)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Support for Transformers",
                                category=FutureWarning)
        import peft
    return peft


def add_lora(backbone: PreTrainedModel, rank: int, alpha: float, dropout: float,
             target_modules) -> None:
    """LoRA on ``target_modules`` of every transformer layer (peft, in place)."""
    names = lora_target_names(backbone, target_modules)
    peft = _peft()
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=float(dropout),
                             target_modules=names)
    peft.inject_adapter_in_model(config, backbone)


class BottleneckAdapter(torch.nn.Module):
    """``h + up(GELU(down(h)))``; ``up`` starts at zero, so the adapter starts as the
    identity and the adapted backbone as the pre-trained one."""

    def __init__(self, size: int, bottleneck: int):
        super().__init__()
        self.down = torch.nn.Linear(size, bottleneck)
        self.up = torch.nn.Linear(bottleneck, size)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(torch.nn.functional.gelu(self.down(hidden)))


def _adapt_output(block: torch.nn.Module, args, output):
    """Forward hook: the block's adapter on its output (an attention block returns a tuple
    whose first item is its output). A function of the block alone, so a deep copy of the
    backbone adapts with its own adapters."""
    adapter = getattr(block, ADAPTER)
    if isinstance(output, tuple):
        return (adapter(output[0]), *output[1:])
    return adapter(output)


def add_adapters(backbone: PreTrainedModel, bottleneck: int) -> None:
    """A :class:`BottleneckAdapter` after the attention and the feed-forward block of every
    transformer layer (in place)."""
    for layer in backbone.encoder.layers:
        for block in (layer.attention, layer.feed_forward):
            block.add_module(ADAPTER, BottleneckAdapter(backbone.config.hidden_size, bottleneck))
            block.register_forward_hook(_adapt_output)


def adapt_backbone(backbone: PreTrainedModel, adaptation: str, lora_rank: int = 8,
                   lora_alpha: float = 16, lora_dropout: float = 0.0,
                   lora_target_modules=("q_proj", "v_proj"), adapter_bottleneck: int = 64
                   ) -> None:
    """Set ``backbone`` up for ``adaptation`` (module docstring), in place: ``full`` leaves
    it as it is; the others freeze every original weight (and the CNN's input gradient,
    HF's ``_requires_grad``), then add the LoRA or adapter weights."""
    check_adaptation(adaptation, lora_rank, lora_alpha, lora_dropout, lora_target_modules,
                     adapter_bottleneck)
    if adaptation == "full":
        return
    backbone.feature_extractor._freeze_parameters()
    backbone.requires_grad_(False)
    if adaptation == "lora":
        add_lora(backbone, lora_rank, lora_alpha, lora_dropout, lora_target_modules)
    elif adaptation == "adapter":
        add_adapters(backbone, adapter_bottleneck)


def merge_adaptation(embedder: torch.nn.Module) -> PreTrainedModel:
    """A copy of ``embedder.wav2vec2`` as a plain backbone of its class: LoRA folded into
    the weights (``W + (alpha / rank) B A``; peft's ``merge(safe_merge=True)`` refuses
    non-finite results), so its state_dict has the keys of an unadapted model and a plain
    SpeechBrain ``EncoderClassifier`` can load it. ``full`` and ``frozen`` copy it as is.

    Adapters are non-linear in the hidden states and cannot be folded into any weight:
    ValueError for such an embedder (the SpeechBrain folder of an ``adapter`` run rebuilds
    them with SpeechBrain's own adapter classes, lowres.export.speechbrain_folder).
    """
    backbone = copy.deepcopy(embedder.wav2vec2)
    if any(name.endswith(ADAPTER) for name, _ in backbone.named_modules()):
        raise ValueError("bottleneck adapters cannot be folded into the backbone's weights: "
                         "export the adapted backbone with its adapters")
    lora_layers = [(name, module) for name, module in backbone.named_modules()
                   if name and hasattr(module, "lora_A")]
    for name, module in lora_layers:
        module.merge(safe_merge=True)
        parent, child = name.rsplit(".", 1)
        setattr(backbone.get_submodule(parent), child, module.get_base_layer())
    backbone.__dict__.pop("peft_config", None)
    return backbone


def lr_groups(modules: torch.nn.Module, embedder: torch.nn.Module, lr: float,
              ssl_adaptation_lr: float | None
              ) -> list[tuple[list[torch.nn.Parameter], float]] | None:
    """The optimiser's parameter groups for ``ssl_adaptation_lr``, each with its LR
    relative to ``lr``: the main group first (everything but the backbone: what logs and
    progress show), then the backbone's trainable weights (all of them in ``full``, the
    LoRA / adapter weights otherwise) at ``ssl_adaptation_lr / lr``. None (one group, the
    Brain's own) without ``ssl_adaptation_lr``. Only weights that can train are listed."""
    if ssl_adaptation_lr is None:
        return None
    backbone = [p for p in embedder.wav2vec2.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in modules.parameters() if p.requires_grad and id(p) not in ids]
    return [(rest, 1.0), (backbone, ssl_adaptation_lr / lr)]


def parameter_counts(modules: torch.nn.Module, embedder: torch.nn.Module,
                     backbone_trains: bool = True) -> dict[str, int]:
    """``{"trainable", "total"}`` parameters of ``modules`` (the whole model: embedder and
    classifier). Trainable: those with ``requires_grad`` (in ``full`` with the freeze
    schedule, what trains once the backbone is unfrozen), less the backbone's if it stays
    frozen for the whole run (``backbone_trains`` False)."""
    params = list(modules.parameters())
    trainable = {id(p): p for p in params if p.requires_grad}
    if not backbone_trains and hasattr(embedder, "wav2vec2"):
        for p in embedder.wav2vec2.parameters():
            trainable.pop(id(p), None)
    return {"trainable": sum(p.numel() for p in trainable.values()),
            "total": sum(p.numel() for p in params)}
