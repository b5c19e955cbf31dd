"""The PALOMA window rule on hand-made cases, and window NLLs against scoring every token one by one."""
from __future__ import annotations

import math

import pytest
import torch

import xlstm
from experiments.eval.perplexity import Window, document_nlls, perplexity, rolling_windows

P = 99  # the prefix (end-of-text) token


def test_windows_score_every_token_once_and_fill_the_last_window_with_context():
    t = list(range(10))  # t_0 .. t_9, L = 4
    assert rolling_windows(t, 4, P) == [
        Window((P, 0, 1, 2), (0, 1, 2, 3)),  # the first window starts at the prefix
        Window((3, 4, 5, 6), (4, 5, 6, 7)),  # a full window: one token of context (t_3)
        Window((5, 6, 7, 8), (8, 9)),  # the last: filled with earlier tokens, only t_8, t_9 scored
    ]


@pytest.mark.parametrize("n, L", [(1, 4), (4, 4), (5, 4), (13, 5), (7, 1)])
def test_every_token_is_a_target_exactly_once_and_inputs_end_before_it(n, L):
    tokens = list(range(100, 100 + n))
    windows = rolling_windows(tokens, L, P)
    assert [t for w in windows for t in w.targets] == tokens
    for w in windows:
        assert len(w.inputs) <= L and len(w.targets) <= len(w.inputs)
        # the output at input position j predicts the token after it: the scored inputs are the targets shifted
        seq = [P, *tokens]
        last = seq.index(w.targets[-1])
        assert list(w.inputs) == seq[last - len(w.inputs):last]
    assert rolling_windows([], L, P) == []


def test_document_nll_equals_the_sum_of_per_token_nlls_with_full_context_inside_each_window():
    torch.manual_seed(0)
    lm = xlstm.build("llama", embedding_dim=16, num_blocks=1, num_heads=2, vocab_size=100).double().eval()
    tokens = torch.randint(0, 99, (11,)).tolist()
    windows = rolling_windows(tokens, 4, P)
    (nll, count), = document_nlls(lm, [tokens], 4, P, batch_size=2)
    expected = 0.0
    for w in windows:  # one forward per target, the window's inputs up to it
        for k, target in enumerate(w.targets):
            stop = len(w.inputs) - len(w.targets) + k + 1
            logits = lm(torch.tensor([w.inputs[:stop]]))[0, -1]
            expected -= torch.log_softmax(logits, -1)[target].item()
    assert count == 11 and nll == pytest.approx(expected, rel=1e-12)
    assert perplexity(nll, count) == pytest.approx(math.exp(expected / 11))
    assert math.isnan(perplexity(0.0, 0))
