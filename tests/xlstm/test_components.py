"""The shared layers' fast forms against the plain PyTorch ops they replace (float64, values and gradients)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.testing import assert_close
from xlstm.components import BlockDiagonalLinear, CausalConv1d


def test_causal_conv_equals_depthwise_conv1d_with_and_without_a_carried_state():
    torch.manual_seed(0)
    conv = CausalConv1d(6, 4).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 3, 6, dtype=torch.float64)
    y, last = conv(x, state)
    padded = torch.cat([state, x], 1)
    ref = F.conv1d(padded.transpose(1, 2), conv.weight, conv.bias, groups=6).transpose(1, 2)
    assert_close("y", ref, y, 1e-15)
    assert torch.equal(last, padded[:, -3:])
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), (x, conv.weight, conv.bias))
    ref_grads = torch.autograd.grad((ref * w).sum(), (x, conv.weight, conv.bias))
    for name, r, g in zip(("dx", "dw", "db"), ref_grads, grads):
        assert_close(name, r, g, 1e-14)
    first, mid = conv(x[:, :4])  # in two calls = in one (zero initial state)
    second, _ = conv(x[:, 4:], mid)
    assert_close("carried", conv(x)[0], torch.cat([first, second], 1), 1e-15)


def test_block_diagonal_layers_together_equal_each_alone():
    torch.manual_seed(0)
    a, b = BlockDiagonalLinear(12, 3).double(), BlockDiagonalLinear(12, 3).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64, requires_grad=True)
    ya, yb = BlockDiagonalLinear.together(x, a, b)
    dense = torch.block_diag(*a.weight)  # (12, 12): the map the blocks define
    assert_close("dense", x @ dense.t(), ya, 1e-15)
    w = torch.randn_like(ya)
    got = torch.autograd.grad((ya * w + yb).sum(), (x, a.weight, b.weight))
    ref = torch.autograd.grad((a(x) * w + b(x)).sum(), (x, a.weight, b.weight))
    for name, r, g in zip(("dx", "dwa", "dwb"), ref, got):
        assert_close(name, r, g, 1e-15)
