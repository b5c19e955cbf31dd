"""The block-diagonal map's cpp backend against the einsum reference: values and both gradients in float64 (the
generic loops) and float32 (the vectorized path for blocks of 4 inputs), strided inputs, outputs in parts, the
choice of "auto", and torch.compile seeing the custom op as one node."""
from __future__ import annotations

import pytest
import torch

from kernels.blockdiag import block_diagonal, block_diagonal_torch, resolve_backend
from kernels.testing import assert_close

# (rows shape, NB, BO, BI, parts): the mLSTM's q+k (BO 8 in 2 parts) and v (BO 4), odd sizes for the generic loops
CASES = [((2, 7), 5, 8, 4, 2), ((3, 5), 6, 4, 4, 1), ((1, 9), 3, 6, 5, 3), ((4,), 2, 3, 2, 1), ((2, 3), 4, 12, 4, 3)]


def _run(backend, x, weight, parts, seed=1):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    ys = block_diagonal(x, weight, parts=parts, backend=backend)
    g = torch.Generator().manual_seed(seed)
    loss = sum((y.double() * torch.randn(y.shape, generator=g, dtype=torch.float64)).sum() for y in ys)
    loss.backward()
    return ys, x.grad, weight.grad


def _inputs(rows, NB, BO, BI, dtype, strided=False):
    g = torch.Generator().manual_seed(0)
    C = NB * BI
    x = torch.randn(*rows, 3 * C, generator=g, dtype=torch.float64)[..., C:2 * C] if strided else \
        torch.randn(*rows, C, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.randn(NB, BO, BI, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "column-slice"])
@pytest.mark.parametrize("rows, NB, BO, BI, parts", CASES,
                         ids=[f"NB{c[1]}-BO{c[2]}-BI{c[3]}-parts{c[4]}" for c in CASES])
def test_cpp_matches_the_einsum_in_float64(rows, NB, BO, BI, parts, strided):
    x, weight = _inputs(rows, NB, BO, BI, torch.float64, strided)
    ref, got = _run("torch", x, weight, parts), _run("cpp", x, weight, parts)
    assert len(got[0]) == parts
    for name, r, o in zip([f"y{i}" for i in range(parts)], ref[0], got[0]):
        assert o.is_contiguous() and o.shape == r.shape
        assert_close(name, r, o, 1e-14)
    assert_close("dx", ref[1], got[1], 1e-14)
    assert_close("dW", ref[2], got[2], 1e-13)  # sums over all rows, in another order


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "column-slice"])
@pytest.mark.parametrize("BO, parts", [(8, 2), (4, 1), (12, 3)], ids=["q+k", "v", "three-parts"])
def test_the_float32_vector_path_stays_within_rounding(BO, parts, strided):
    x, weight = _inputs((2, 300), 16, BO, 4, torch.float64, strided)  # 600 rows: several thread chunks
    ref = _run("torch", x, weight, parts)
    got = _run("cpp", x.float(), weight.float(), parts)
    # float32 sums of 4 products (y, dx) or of 600 rows (dW): 1e-5 of the largest value leaves a wide margin over
    # ~1e-7 per op, and a wrong lane (another block's or output's number) is off by O(1)
    for name, r, o in zip([f"y{i}" for i in range(parts)], ref[0], got[0]):
        assert_close(name, r, o, 1e-5)
    assert_close("dx", ref[1], got[1], 1e-5)
    assert_close("dW", ref[2], got[2], 1e-5)


def test_auto_takes_cpp_for_float_cpu_blocks_of_four():
    x, w4, w32 = torch.zeros(2, 64), torch.zeros(16, 8, 4), torch.zeros(2, 32, 32)
    assert resolve_backend("auto", x, w4) == "cpp"
    assert resolve_backend("auto", x, w32) == "torch"  # the sLSTM's head-wise blocks: a real matmul
    assert resolve_backend("auto", x.bfloat16(), w4.bfloat16()) == "torch"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert resolve_backend("auto", x, w4) == "torch"
    with pytest.raises(ValueError, match="use backend='torch'"):
        resolve_backend("cpp", x.bfloat16(), w4.bfloat16())
    with pytest.raises(ValueError, match="unknown block-diagonal backend"):
        resolve_backend("fast", x, w4)


def test_compiled_without_graph_breaks():
    x, weight = _inputs((2, 6), 4, 8, 4, torch.float32)

    def f(x, weight):
        q, k = block_diagonal(x, weight, parts=2)
        return (q.sin() * k).sum()

    compiled = torch.compile(f, fullgraph=True)  # fullgraph: a graph break is an error
    xs, ws = x.clone().requires_grad_(), weight.clone().requires_grad_()
    xc, wc = x.clone().requires_grad_(), weight.clone().requires_grad_()
    f(xs, ws).backward()
    compiled(xc, wc).backward()
    assert_close("dx", xs.grad, xc.grad, 1e-6)
    assert_close("dW", ws.grad, wc.grad, 1e-6)
