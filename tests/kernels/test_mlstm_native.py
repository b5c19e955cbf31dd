"""What is particular to the compiled chunkwise mLSTM (backend "chunkwise--cpp"; its values, states and gradients
against the float64 parallel reference: test_mlstm.py): strided heads, long chunks, thread count, "auto" on a CPU,
the custom ops under torch.compile, and the one-line errors."""
from __future__ import annotations

import importlib

import pytest
import torch

from kernels import native
from kernels.mlstm import mlstm, resolve_backend
from kernels.mlstm.native import _forward_op
from kernels.testing import assert_close

mlstm_package = importlib.import_module("kernels.mlstm")


def _layer_heads(B, NH, S, DK, DV, dtype=torch.float64, seed=0, gate_scale=3.0):
    """q, k, v as the mLSTM layer hands them over: (B, NH, S, D) views of (B, S, NH, D) tensors; gates (B, NH, S)
    as views of (B, S, NH)."""
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, S, NH, DK, generator=g, dtype=dtype).transpose(1, 2) for _ in range(2))
    v = torch.randn(B, S, NH, DV, generator=g, dtype=dtype).transpose(1, 2)
    igate = (torch.randn(B, S, NH, generator=g, dtype=dtype) * gate_scale).transpose(1, 2)
    fgate = (torch.randn(B, S, NH, generator=g, dtype=dtype) * gate_scale + 2).transpose(1, 2)
    return [q, k, v, igate, fgate]


def _run(backend, inputs, chunk):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]  # clone keeps the strided layout
    h, (c, n, _) = mlstm(*leaves, backend=backend, chunk_size=chunk, return_last_state=True)
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (h, c, n))
    loss.backward()
    return h, c, n, [t.grad for t in leaves]


def test_strided_heads_are_read_in_place_and_answered_in_their_layout():
    """The layer's heads are transposed views: h and dq, dk, dv come back in that layout (no copies on either side)
    and equal the torch form's (float64, summation order only: 1e-12)."""
    inputs = _layer_heads(2, 3, 45, 16, 8)
    h, c, n, grads = _run("chunkwise--cpp", inputs, 16)
    h_ref, c_ref, n_ref, grads_ref = _run("chunkwise--torch", [t.contiguous() for t in inputs], 16)
    assert h.stride() == inputs[2].stride()
    for name, t, ref in zip(["h", "C", "n", "dq", "dk", "dv", "di", "df"], [h, c, n, *grads],
                            [h_ref, c_ref, n_ref, *grads_ref]):
        assert_close(name, ref, t, 1e-12)
    for grad, leaf in zip(grads[:3], inputs[:3]):
        assert grad.stride() == leaf.stride()


def test_long_chunks_with_strong_decay_equal_the_torch_form():
    """Chunks of 128 with forget gates that decay below float32's normal range inside a chunk: subnormals are
    flushed to zero in the kernel (terms under 1e-38 of their sums), which leaves float32 results within 1e-5 of
    the float64 torch form, as close as the torch form's own float32 run."""
    inputs = _layer_heads(1, 2, 300, 16, 16, gate_scale=4.0)
    ref = _run("chunkwise--torch", inputs, 128)
    ref32 = _run("chunkwise--torch", [t.float() for t in inputs], 128)
    out32 = _run("chunkwise--cpp", [t.float() for t in inputs], 128)
    for r, a, b in zip([*ref[:3], *ref[3]], [*ref32[:3], *ref32[3]], [*out32[:3], *out32[3]]):
        torch_error = ((a.double() - r).abs().max() / r.abs().max()).item()
        assert_close("cpp fp32", r, b.double(), max(1e-5, 2 * torch_error))


def test_results_do_not_depend_on_the_thread_count():
    """Each (batch, head) chain runs on one thread from its first chunk to its last: 1 and 2 threads, same bits."""
    inputs = _layer_heads(2, 3, 70, 8, 8, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("chunkwise--cpp", inputs, 16)
        torch.set_num_threads(2)
        two = _run("chunkwise--cpp", inputs, 16)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip([*one[:3], *one[3]], [*two[:3], *two[3]]):
        assert torch.equal(a, b)


def test_auto_takes_the_compiled_form_on_a_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "chunkwise--cpp"
    monkeypatch.setattr(mlstm_package, "cpp_available", lambda: False)  # no compiler on this machine
    assert resolve_backend("auto", cpu) == "chunkwise--torch"


def test_the_custom_op_registration():
    """torch.library's own checks: the fake (meta) function's shapes and strides, the autograd registration, and
    the op under torch.compile's tracing."""
    q, k, v, igate, fgate = (t.float() for t in _layer_heads(1, 2, 20, 8, 8))
    B, NH, _, DK = q.shape
    state = (torch.zeros(B, NH, DK, 8), torch.zeros(B, NH, DK), torch.full((B, NH), float("-inf")))
    args = [t.requires_grad_() for t in (q, k, v, igate, torch.nn.functional.logsigmoid(fgate).detach())]
    torch.library.opcheck(_forward_op, (*args, *state, 8, 1e-6))


def test_compiled_call_equals_eager():
    inputs = [t.float() for t in _layer_heads(2, 2, 40, 8, 8)]

    def loss(*leaves):
        return mlstm(*leaves, backend="chunkwise--cpp", chunk_size=16).square().sum()

    runs = []
    for fn in (loss, torch.compile(loss, fullgraph=True)):  # fullgraph: the op is one node, no graph break
        leaves = [t.clone().requires_grad_() for t in inputs]
        value = fn(*leaves)
        value.backward()
        runs.append([value, *(t.grad for t in leaves)])
    for a, b in zip(*runs):
        assert_close("compiled", a, b, 1e-6)


def test_bad_calls_say_what_to_do(monkeypatch):
    inputs = _layer_heads(1, 1, 8, 4, 4)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        mlstm(*inputs, backend="chunkwise--cpp", chunk_size=0)

    def fail(source):
        raise native.NativeBuildError("no C++ compiler: 'g++' is not on PATH (install g++ or set CXX)")

    monkeypatch.setattr(native, "load_library", fail)
    with pytest.raises(RuntimeError, match="use backend='chunkwise--torch'"):
        mlstm(*inputs, backend="chunkwise--cpp")
