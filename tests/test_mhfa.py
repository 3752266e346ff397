"""ssl_pooling: mhfa (lowres.models.mhfa): multi-head factorized attentive pooling of all the
SSL model's hidden states. The module alone on random hidden states, then inside the
Wav2vec2Embedder on tiny random checkpoints (no network)."""

import pytest
import torch

from lowres.models.mhfa import MHFA

torch.set_num_threads(1)


# -- the module ----------------------------------------------------------------------------
def test_module_pools_hidden_states_to_one_embedding_per_utterance():
    torch.manual_seed(0)
    mhfa = MHFA(3, 16, heads=4, compression_dim=8, embedding_dim=12)
    assert mhfa.layer_weights.shape == (2, 3) and not mhfa.layer_weights.any()  # equal
    hidden = torch.randn(3, 2, 10, 16)
    out = mhfa(hidden, torch.tensor([10, 6]))
    assert out.shape == (2, 12) and torch.isfinite(out).all()
    torch.testing.assert_close(mhfa(tuple(hidden), torch.tensor([10, 6])), out)  # a tuple too
    with pytest.raises(ValueError, match="got 4 hidden states for 3 layer weights"):
        mhfa(torch.randn(4, 2, 10, 16), torch.tensor([10, 6]))
    with pytest.raises(ValueError, match="heads must be a positive integer, got 0"):
        MHFA(3, 16, heads=0)


def test_module_ignores_padded_frames():
    """An utterance of 7 frames alone and padded to 12 frames (with garbage, not zeros) in a
    batch beside a longer one: the same embedding."""
    torch.manual_seed(1)
    mhfa = MHFA(3, 16, heads=4, compression_dim=8, embedding_dim=12)
    with torch.no_grad():
        mhfa.layer_weights.normal_()  # keys and values weighted differently
        short, long = torch.randn(3, 1, 7, 16), torch.randn(3, 1, 12, 16)
        padded = torch.cat([torch.cat([short, 100 * torch.randn(3, 1, 5, 16)], 2), long], 1)
        alone = mhfa(short, torch.tensor([7]))
        batch = mhfa(padded, torch.tensor([7, 12]))
    torch.testing.assert_close(batch[:1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1:], mhfa(long, torch.tensor([12])), atol=1e-5, rtol=1e-5)
