"""LSTM and LSTM (Block): causality, step-by-step == full forward, LM wrapper, registry errors."""
from __future__ import annotations

import pytest
import torch

import xlstm

from .helpers import stepped_logits


@pytest.mark.parametrize("name", ["lstm", "lstm_block"])
def test_causal(name):
    torch.manual_seed(0)
    model = xlstm.build_backbone(xlstm.make_config(name, embedding_dim=16, num_blocks=2)).double()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    changed = x.clone()
    changed[:, 7:] = torch.randn(2, 5, 16, dtype=torch.float64)
    assert torch.equal(model(x)[:, :7], model(changed)[:, :7])
    assert not torch.allclose(model(x)[:, 7:], model(changed)[:, 7:])


@pytest.mark.parametrize("name", ["lstm", "lstm_block"])
def test_step_by_step_equals_forward(name):
    torch.manual_seed(0)
    lm = xlstm.build(name, embedding_dim=16, num_blocks=2, vocab_size=11).double()
    tokens = torch.randint(0, 11, (3, 9))
    full = lm(tokens)
    torch.testing.assert_close(stepped_logits(lm, tokens), full, rtol=1e-12, atol=1e-12)


def test_generate_greedy_matches_argmax_of_forward():
    torch.manual_seed(0)
    lm = xlstm.build("lstm_block", embedding_dim=16, vocab_size=7).double()
    prompt = torch.randint(0, 7, (2, 4))
    out = lm.generate(prompt, max_new_tokens=5, greedy=True)
    assert out.shape == (2, 9) and torch.equal(out[:, :4], prompt)
    for t in range(4, 9):  # each generated token is the argmax of the full forward on its prefix
        assert torch.equal(out[:, t], lm(out[:, :t])[:, -1].argmax(-1))


def test_tied_embeddings_share_the_matrix():
    lm = xlstm.build("lstm", embedding_dim=8, vocab_size=13, tie_embeddings=True)
    assert lm.head.weight is lm.embedding.weight


def test_lstm_param_count_matches_table2_vanilla_lstm():
    # Table 2 (top), row 1: vanilla 24-layer nn.LSTM, width 1536, untied, vocab 50304: 607.8M
    with torch.device("meta"):
        lm = xlstm.build("lstm", embedding_dim=1536, num_blocks=24, vocab_size=50304)
    assert round(sum(p.numel() for p in lm.parameters()) / 1e6, 1) == 607.8


def test_unknown_names_and_keys_raise_with_the_valid_ones():
    with pytest.raises(ValueError, match="lstm_block"):
        xlstm.build("nope")
    with pytest.raises(ValueError, match="embedding_dim"):
        xlstm.make_config("lstm", embeding_dim=3)
