"""The long convolution (H3 / Hyena): the FFT form against the float64 direct (Toeplitz) reference, gradients of
u, filter and skip, causality, low-precision inputs, a hand-computed case, the decode helper and the errors."""
from __future__ import annotations

import math

import pytest
import torch

from kernels.longconv import BACKENDS, causal_conv_last, fft_length, long_conv, resolve_backend
from kernels.testing import assert_close

# (B, D, S, L): S = 1, odd S, L = S, L < S, L = 1 (a pure per-channel scale), S not an FFT-friendly length
SHAPES = [(1, 1, 1, 1), (2, 3, 7, 7), (2, 3, 7, 3), (1, 2, 7, 1), (1, 4, 129, 129), (2, 2, 129, 40),
          (1, 2, 1025, 300)]
SHAPE_IDS = [f"B{b}-D{d}-S{s}-L{l}" for b, d, s, l in SHAPES]
# float64: the forms differ only in rounding (the FFT's is ~1e-16 * log2 n relative; measured <= 1e-15), so 1e-10
# leaves ~1e5 ulps of headroom. float32 vs the float64 reference: a radix-2/3/5 FFT's relative RMS error grows like
# u * log2(n) (u = 2^-24 = 6e-8; Higham, Accuracy and Stability of Numerical Algorithms, sec. 24.1), and the direct
# form's sums of up to B * S terms (the filter gradient) like u * sqrt(B S) (<= 3e-6 here); 1e-6 * log2(n) (~16 u per
# FFT level: 1e-6 at S = 1 .. 1.1e-5 at S = 1025) holds both with >= 20x margin (measured <= 2e-7 on outputs,
# <= 5.4e-7 on gradients) while any indexing, padding or skip bug is an O(1e-2..1) error.
RATIO64 = 1e-10


def ratio32(S: int) -> float:
    return 1e-6 * math.log2(2 * fft_length(S))


def _inputs(B: int, D: int, S: int, L: int, dtype=torch.float64, seed: int = 0):
    """u (B, D, S), filter (D, L) scaled by L^-1/2 (unit-scale outputs), skip (D,); drawn in float32 so a float32
    copy holds exactly the same values as the float64 one."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, D, S, generator=g)
    f = torch.randn(D, L, generator=g) / math.sqrt(L)
    skip = torch.randn(D, generator=g)
    return u.to(dtype), f.to(dtype), skip.to(dtype)


def _run(backend: str, u, f, skip):
    """y and the gradients of a random-weighted sum of y (so every output is checked) for u, filter and skip."""
    leaves = [u.clone().requires_grad_(), f.clone().requires_grad_(),
              None if skip is None else skip.clone().requires_grad_()]
    y = long_conv(leaves[0], leaves[1], skip=leaves[2], backend=backend)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(y.dtype)
    (y * w).sum().backward()
    return y, [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("with_skip", [False, True], ids=["noskip", "skip"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("backend, dtype", [("fft--torch", torch.float64), ("fft--torch", torch.float32),
                                            ("direct--torch", torch.float32)], ids=["fft-fp64", "fft-fp32",
                                                                                    "direct-fp32"])
def test_form_matches_float64_direct_reference(backend, dtype, shape, with_skip):
    B, D, S, L = shape
    u, f, skip = _inputs(B, D, S, L)
    skip = skip if with_skip else None
    ref, ref_grads = _run("direct--torch", u, f, skip)
    out, grads = _run(backend, u.to(dtype), f.to(dtype), None if skip is None else skip.to(dtype))
    ratio = RATIO64 if dtype == torch.float64 else ratio32(S)
    assert out.dtype == dtype
    assert_close(f"{backend} y", ref, out, ratio)
    for name, r, o in zip(["du", "dfilter", "dskip"], ref_grads, grads):
        if r is None:
            assert o is None
        else:
            assert o.dtype == dtype and o.shape == r.shape
            assert_close(f"{backend} {name}", r, o, ratio)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_gradients_are_the_true_ones(backend):
    """torch.autograd.gradcheck (float64 finite differences) of u, a short filter and skip, for each form."""
    u, f, skip = (t.requires_grad_() for t in _inputs(2, 2, 6, 4))
    assert torch.autograd.gradcheck(lambda a, b, c: long_conv(a, b, skip=c, backend=backend), (u, f, skip))


def test_hand_computed_tiny_case():
    """u = [1, 2, 3], filter [1, 10, 100], skip 0.5: y = [1 + .5, 2 + 10 + 1, 3 + 20 + 100 + 1.5];
    a 2-tap filter [1, 10] without skip: y = [1, 2 + 10, 3 + 20]."""
    u = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    for backend in BACKENDS:
        y = long_conv(u, torch.tensor([[1.0, 10.0, 100.0]], dtype=torch.float64), skip=torch.tensor([0.5],
                      dtype=torch.float64), backend=backend)
        torch.testing.assert_close(y, torch.tensor([[[1.5, 13.0, 124.5]]], dtype=torch.float64), rtol=1e-14, atol=0)
        y = long_conv(u, torch.tensor([[1.0, 10.0]], dtype=torch.float64), backend=backend)
        torch.testing.assert_close(y, torch.tensor([[[1.0, 12.0, 23.0]]], dtype=torch.float64), rtol=1e-14, atol=0)


def _leak(conv, S: int = 50) -> tuple[float, float]:
    """Changing u at positions >= t0 (for several t0): the largest change of an output before t0 and the smallest
    largest-change at t0, both relative to max |y|."""
    u, f, skip = _inputs(2, 3, S, S)
    y0 = conv(u, f, skip)
    leak, effect = 0.0, math.inf
    for t0 in (0, 1, 24, S - 1):
        u1 = u.clone()
        u1[..., t0:] += torch.randn(u1[..., t0:].shape, generator=torch.Generator().manual_seed(t0),
                                    dtype=u.dtype)
        y1 = conv(u1, f, skip)
        scale = y0.abs().max().item()
        leak = max(leak, (y1[..., :t0] - y0[..., :t0]).abs().max().item() / scale if t0 else 0.0)
        effect = min(effect, (y1[..., t0] - y0[..., t0]).abs().max().item() / scale)
    return leak, effect


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_causal_no_output_depends_on_later_inputs(backend):
    """float64: the direct form is exactly causal (its Toeplitz zeros make 0 * x = 0); the FFT form mixes every
    position in the transform, so a future input moves past outputs only by rounding (<= 1e-12 of max |y|)."""
    leak, effect = _leak(lambda u, f, skip: long_conv(u, f, skip=skip, backend=backend))
    assert leak <= (0.0 if backend == "direct--torch" else 1e-12), leak
    assert effect > 1e-3  # the perturbation does reach y[t0]


def test_the_causality_check_catches_circular_wrap_around():
    """The same check on an unpadded (n = S) FFT convolution: the future leaks into the past at O(1)."""
    def circular(u, f, skip):
        n = u.shape[-1]
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(f, n=n), n=n) + skip[:, None] * u
    assert _leak(circular)[0] > 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_half_precision_inputs_are_computed_in_float32(backend, dtype):
    """A bf16/fp16 u (filter and skip float32 parameters, as in a model): the output and du have u's dtype and are
    exactly the float32 computation on the same values, rounded once. Rounding moves each element by at most
    u_bf16 = 2^-8 of itself (fp16: 2^-11) and the float32 result is within 1e-6 of the float64 reference, so the ratio
    to the reference is below 2^-8 + 1e-5 (measured 1.6e-3 for bf16, 2.1e-4 for fp16)."""
    u, f, skip = _inputs(2, 3, 129, 100)
    u_low = u.to(dtype)
    out, grads = _run(backend, u_low, f.float(), skip.float())
    out32, grads32 = _run(backend, u_low.float(), f.float(), skip.float())
    assert out.dtype == dtype and grads[0].dtype == dtype and grads[1].dtype == grads[2].dtype == torch.float32
    assert torch.equal(out, out32.to(dtype))
    ref = long_conv(u_low.double(), f, skip=skip, backend="direct--torch")
    assert_close(f"{backend} {dtype} y", ref, out, 2**-8 + 1e-5)


@pytest.mark.parametrize("with_skip", [False, True], ids=["noskip", "skip"])
@pytest.mark.parametrize("L", [3, 20, 32], ids=["L<S", "L=S", "L>S"])
def test_causal_conv_last_reproduces_every_position_of_the_full_op(L, with_skip):
    """Decoding token by token: causal_conv_last over each prefix u[..., :T] (a filter longer than the prefix uses
    its first T taps) equals long_conv's output at position T - 1, values and gradients, float64."""
    S = 20
    u, f, skip = _inputs(2, 3, S, L)
    skip = skip if with_skip else None
    full = long_conv(u, f[:, :S], skip=skip, backend="direct--torch")
    steps = torch.stack([causal_conv_last(u[..., :T], f, skip) for T in range(1, S + 1)], dim=-1)
    assert_close("decode", full, steps, 1e-12)
    a = [t if t is None else t.clone().requires_grad_() for t in (u, f, skip)]
    b = [t if t is None else t.clone().requires_grad_() for t in (u, f, skip)]
    w = torch.randn(2, 3, dtype=torch.float64)
    (causal_conv_last(a[0][..., :13], a[1], a[2]) * w).sum().backward()
    (long_conv(b[0][..., :13], b[1][:, :13], skip=b[2], backend="direct--torch")[..., -1] * w).sum().backward()
    for name, x, y in zip(["du", "dfilter", "dskip"], a, b):
        if x is not None:
            assert_close(f"last {name}", y.grad, x.grad, 1e-12)
    low = causal_conv_last(u.bfloat16(), f.float(), None if skip is None else skip.float())
    assert low.dtype == torch.bfloat16 and low.shape == (2, 3)


def test_fft_length_is_the_smallest_5_smooth_length():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1
    for n in range(1, 600):
        assert fft_length(n) == next(m for m in range(n, 2 * n + 1) if smooth(m)), n


def test_auto_is_fft_and_unknown_backend_lists_the_valid_ones():
    assert resolve_backend("auto") == "fft--torch" and set(BACKENDS) == {"direct--torch", "fft--torch"}
    u, f, _ = _inputs(1, 2, 4, 4)
    with pytest.raises(ValueError, match="valid: auto, direct--torch, fft--torch"):
        long_conv(u, f, backend="nope")


_u, _f, _skip = _inputs(2, 3, 5, 5)
BAD = {
    "u-2d": (_u[0], _f, None), "filter-3d": (_u, _f[None], None), "filter-wrong-D": (_u, _f[:2], None),
    "filter-longer-than-S": (_u, torch.zeros(3, 6, dtype=torch.float64), None),
    "filter-empty": (_u, _f[:, :0], None), "empty-sequence": (_u[..., :0], _f[:, :0], None),
    "skip-2d": (_u, _f, _skip[:, None]), "skip-wrong-D": (_u, _f, _skip[:2]),
    "integer-u": (_u.long(), _f, None), "complex-filter": (_u, _f.to(torch.complex128), None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_shapes_are_one_line_value_errors(case):
    u, f, skip = BAD[case]
    calls = [lambda: long_conv(u, f, skip=skip)]
    if case != "filter-longer-than-S":  # a filter longer than the prefix is the decode case, valid there
        calls.append(lambda: causal_conv_last(u, f, skip))
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        assert "\n" not in str(err.value) and ("do not fit" in str(err.value) or "floating" in str(err.value))
