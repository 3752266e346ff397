"""Multi-head factorized attentive pooling (MHFA): a light speaker back-end on all the hidden
states of an SSL model (Peng, Plchot, Stafylakis, Mošner, Burget, Černocký, "An
attention-based backend allowing efficient fine-tuning of transformer models for speaker
verification", SLT 2022, arXiv:2210.01273).

Why: the SSL model's layers hold speaker information unevenly, and fine-tuning the whole
model costs memory and time and, on little data, risks overfitting. MHFA trains a few
weights on a frozen (or later fine-tuned) backbone and lets each of its heads pick the
frames that matter:

    hidden states [L+1, B, T, D]  (the CNN projection's and each transformer layer's)
    keys   = sum_l softmax(layer_weights[0])_l h_l -> linear D -> C  (compression)
    values = sum_l softmax(layer_weights[1])_l h_l -> linear D -> C
    attention = softmax over the valid frames of (linear C -> H)(keys)   [B, T, H]
    head h's summary = sum_t attention[t, h] values_t                   [B, H, C]
    embedding = linear (H * C -> E)(the H summaries concatenated)        [B, E]

The paper's numbers: C = 128, H = 64, E = 256 (about 2.3 M weights on a base model's
D = 768, against its 94 M). Keys and values come from separate layer weightings (the
"factorization"): which frames to attend to and what to summarise of them may live in
different layers. Both weightings start equal (all zeros before the softmax), as SUPERB's
weighted sum does. Padded frames get no attention (a masked softmax), so an utterance
embeds the same alone or padded in a batch.
"""

from __future__ import annotations

import torch

__all__ = ["MHFA"]


class MHFA(torch.nn.Module):
    """forward(hidden_states [L+1, B, T, D] or a tuple of L+1 [B, T, D], frames [B]) ->
    [B, embedding_dim]; ``frames``: each utterance's valid frames (the first ones)."""

    def __init__(self, n_hidden_states: int, hidden_size: int, heads: int = 64,
                 compression_dim: int = 128, embedding_dim: int = 256):
        super().__init__()
        for name, value in (("n_hidden_states", n_hidden_states), ("hidden_size", hidden_size),
                            ("heads", heads), ("compression_dim", compression_dim),
                            ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MHFA {name} must be a positive integer, got {value!r}")
        # row 0: the keys' layer weights, row 1: the values'
        self.layer_weights = torch.nn.Parameter(torch.zeros(2, n_hidden_states))
        # no biases before the projection: a constant added to the keys or to the attention
        # logits shifts every frame's logit alike (the softmax over time ignores it), one added
        # to the values shifts each summary by a constant (the projection's bias holds it)
        self.key_compression = torch.nn.Linear(hidden_size, compression_dim, bias=False)
        self.value_compression = torch.nn.Linear(hidden_size, compression_dim, bias=False)
        self.attention = torch.nn.Linear(compression_dim, heads, bias=False)
        self.projection = torch.nn.Linear(heads * compression_dim, embedding_dim)

    def forward(self, hidden_states: torch.Tensor | tuple[torch.Tensor, ...],
                frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(hidden_states, torch.Tensor):
            hidden_states = torch.stack(tuple(hidden_states))
        if hidden_states.shape[0] != self.layer_weights.shape[1]:
            raise ValueError(f"MHFA got {hidden_states.shape[0]} hidden states for "
                             f"{self.layer_weights.shape[1]} layer weights")
        weights = torch.softmax(self.layer_weights, 1).to(hidden_states.dtype)
        keys, values = torch.einsum("kl,lbtd->kbtd", weights, hidden_states)
        keys, values = self.key_compression(keys), self.value_compression(values)
        logits = self.attention(keys)  # [B, T, heads]
        valid = torch.arange(logits.shape[1], device=logits.device)[None] < \
            frames.to(logits.device)[:, None]
        logits = logits.masked_fill(~valid[:, :, None], float("-inf"))
        attention = torch.softmax(logits, 1)
        summaries = torch.einsum("bth,btc->bhc", attention, values)  # [B, heads, C]
        return self.projection(summaries.flatten(1))
