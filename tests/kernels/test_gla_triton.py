"""The Triton GLA kernels (``chunkwise--triton``) against the float64 step loop: outputs, last states, every gradient.

On CPU they run under TRITON_INTERPRET=1 (set by tests/conftest.py when no GPU is visible) at tiny shapes; the
``gpu`` tests repeat the comparison at realistic shapes on CUDA. Every torch.empty is NaN-filled in these tests
(tests/kernels/conftest.py), so an output element a kernel never writes fails the comparison.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.gla import BACKENDS, gla, resolve_backend
from kernels.testing import assert_close, gla_inputs, gla_run


pytestmark = pytest.mark.skipif("chunkwise--triton" not in BACKENDS, reason="triton is not installed")
ROOT = Path(__file__).resolve().parents[2]
KINDS = ["vector", "fixed_vector", "scalar"]  # log_decay (B, H, S, DK), (H, DK), (H,)
NAMES = ["q", "k", "v", "log_decay", "bonus", "initial_state"]
# float32 kernels vs the float64 reference: the same sums in float32 (~6e-8 per rounding) over at most S * DK * DV
# terms with unit-scale inputs, every decay an exp of a direct interval sum <= 0. Measured over every test below:
# <= 1.8e-7 on outputs, states and all gradients but one: d log_decay of a fixed scalar decay, <= 2.5e-6 (S 33:
# per head a reduction over B * S * DK terms of both signs to a value as small as 0.09; chunkwise--torch measures
# 5.6e-7 on the same inputs). 1e-5 leaves 4x over that worst case, 50x over the rest, and fails any wrong term (a
# missed pair or decay power is O(1e-2) or more).
RATIO = 1e-5
# float64 kernels vs the float64 reference: only the order of the sums differs (measured <= 1e-14).
RATIO64 = 1e-12


def _compare(inputs, chunk=16, dtype=torch.float32, ratio=RATIO, label=""):
    ref = gla_run("recurrent--torch", inputs, torch.float64, chunk)
    out = gla_run("chunkwise--triton", inputs, dtype, chunk)
    assert out.keys() == ref.keys()
    for name in ref:
        assert_close(f"{label} {name}", ref[name], out[name], ratio)
    return out


@pytest.mark.parametrize("B, S", [(2, 17), (1, 33)], ids=["B2-S17", "B1-S33"])
@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_the_float64_reference(kind, bonus, with_state, B, S):
    """H 2, DK = DV = 16, chunk 16: one chunk plus one position (two batches: fixed decays and the bonus are shared
    across them), two chunks plus one (the last chunk masked but for one row)."""
    out = _compare(gla_inputs(B, 2, S, 16, 16, kind, bonus, with_state), label=f"{kind} S{S}")
    assert out["o"].dtype == torch.float32 and out["S_T"].dtype == torch.float32
    assert len(out) == 6 + bonus + with_state  # o, S_T, dq, dk, dv, dlog_decay (+ dbonus, dinitial_state)


# (S, DK, DV, chunk, kind): two and four sub-blocks per chunk (the pairs across sub-blocks, and those straddling a
# whole sub-block), head dims that are not powers of two (masked tiles), a 32-wide key tile with two value tiles
SHAPES = [(40, 16, 16, 32, "vector"), (40, 16, 16, 64, "vector"), (40, 16, 16, 64, "scalar"),
          (33, 12, 20, 16, "fixed_vector"), (17, 32, 80, 16, "vector")]


@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("S, DK, DV, chunk, kind", SHAPES, ids=["S{}-DK{}-DV{}-L{}-{}".format(*s) for s in SHAPES])
def test_chunk_sizes_and_head_dims(S, DK, DV, chunk, kind, bonus):
    _compare(gla_inputs(1, 2, S, DK, DV, kind, bonus, with_state=True, seed=1), chunk, label=f"L{chunk}")


@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
def test_strong_decays(kind, bonus, chunk):
    """log a_t uniform in [-20, 0] plus exact -20 and 0 entries: a chunk's decay reaches exp(-20 * 64)."""
    inputs = gla_inputs(1, 2, 40, 16, 16, kind, bonus, with_state=True, seed=3, min_log_decay=-20.0)
    flat = inputs["log_decay"].view(-1)
    flat[::3], flat[1::5] = -20.0, 0.0
    out = _compare(inputs, chunk, label=f"{kind} strong")
    assert all(torch.isfinite(t).all() for t in out.values())


@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("pattern", ["all-20", "strong-then-weak"])
def test_extreme_decay_patterns_keep_every_gradient_relative(pattern, bonus):
    """all-20: a_t = exp(-20) everywhere, so every gradient through a decay (d log_decay above all) is ~exp(-20)
    times the O(1) terms around it; it must still come out to RATIO *relative to itself*, which a log-decay gradient
    formed as sum_{t >= s} (q_t dq_t - k_t dk_t) cannot (its O(1) terms cancel only to float32 rounding: relative
    error 0.9 measured at S 128). strong-then-weak: 24 steps of -20 then 8 of -0.01 in every chunk of 32, where
    prefix sums reach -480 and differences of them would lose the weak steps' factors to float32 rounding."""
    inputs = gla_inputs(1, 2, 40, 16, 16, "vector", bonus, with_state=True)
    if pattern == "all-20":
        inputs["log_decay"] = torch.full_like(inputs["q"], -20.0)
    else:
        steps = torch.where(torch.arange(40) % 32 < 24, -20.0, -0.01).to(torch.float64)
        inputs["log_decay"] = steps.view(1, 1, 40, 1).expand(1, 2, 40, 16).clone()
    _compare(inputs, 32, label=pattern)


@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
def test_float64_kernels_match_to_rounding(kind, bonus):
    _compare(gla_inputs(1, 2, 33, 16, 16, kind, bonus, with_state=True), 16, torch.float64, RATIO64, "fp64")


@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
def test_log_decay_gradient_satisfies_the_gla_identity(bonus):
    """The kernels compute d log_decay directly (chunkwise_dg.py); in float64 it must equal the identity
        d g_s = sum_{t >= s} (q_t dq_t - k_t dk_t) + sum_v S_T dS_T                              (no bonus)
        d g_s = sum_{t >= s+1} q_t dq_t - sum_{t >= s} k_t dk_t + b_s + sum_v S_T dS_T         (bonus),
    b_s = scale q_s * u * k_s (dO_s . v_s). Derivation: o and S_T depend on g only through qt_t = scale q_t exp(G_t)
    (G_{t-1} with bonus), kt_j = k_j exp(-G_j) and the factor exp(G_T) of S_T, G_t = sum_{s <= t} g_s; since
    dL/dqt_t qt_t = dL/dq_t q_t and dL/dkt_j kt_j = dL/dk_j k_j, dL/dG_t = q_t dq_t - k_t dk_t (+ S_T dS_T at T),
    and dL/dg_s = sum_{t >= s} dL/dG_t; with bonus, dq and dk also hold the undecayed bonus term, whose two shares
    are both b_t (hence + b_s after the shift of the q sum)."""
    inputs = gla_inputs(1, 2, 37, 16, 16, "vector", bonus, with_state=True)
    leaves = {n: None if t is None else t.clone().requires_grad_() for n, t in inputs.items()}
    o, s_last = gla(*(leaves[n] for n in NAMES[:4]), bonus=leaves["bonus"], initial_state=leaves["initial_state"],
                    backend="chunkwise--triton", chunk_size=16, return_last_state=True)
    gen = torch.Generator().manual_seed(1)
    do, ds = (torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in (o, s_last))
    ((o * do).sum() + (s_last * ds).sum()).backward()
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    qdq, kdk = q * leaves["q"].grad, k * leaves["k"].grad
    suffix = lambda x: x.flip(2).cumsum(2).flip(2)  # noqa: E731
    expected = suffix(qdq - kdk) + (s_last.detach() * ds).sum(-1)[:, :, None, :]
    if bonus:
        b = 16 ** -0.5 * q * inputs["bonus"][None, :, None, :] * k * (do * v).sum(-1, keepdim=True)
        expected = expected - qdq + b
    assert_close("d log_decay", expected, leaves["log_decay"].grad, 1e-10)


def test_bf16_inputs_with_float32_states():
    """bf16 inputs: the reference runs in float64 on the same rounded inputs; bf16 outputs and gradients carry their
    own 2^-8 rounding (and the TF32 products of half inputs ~2^-11): 1e-2."""
    inputs = gla_inputs(1, 2, 33, 16, 16, "vector", bonus=True, with_state=True)
    rounded = {n: t.to(torch.bfloat16).double() for n, t in inputs.items()}
    ref = gla_run("recurrent--torch", rounded, torch.float64)
    out = gla_run("chunkwise--triton", rounded, torch.bfloat16)
    assert out["o"].dtype == torch.bfloat16 and out["S_T"].dtype == torch.float32
    assert out["dq"].dtype == torch.bfloat16 and out["dlog_decay"].dtype == torch.bfloat16
    for name in ref:
        assert_close(name, ref[name], out[name], 1e-2)


def test_unsupported_inputs_are_refused_with_a_message(monkeypatch):
    q = torch.zeros(1, 1, 8, 300)
    with pytest.raises(ValueError, match="DK=300"):
        gla(q, q, torch.zeros(1, 1, 8, 16), torch.zeros(1), backend="chunkwise--triton")
    q = torch.zeros(1, 1, 8, 16)
    with pytest.raises(ValueError, match="int32"):
        gla(q.int(), q.int(), q.int(), torch.zeros(1), backend="chunkwise--triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="chunkwise--torch"):
        gla(q, q, q, torch.zeros(1), backend="chunkwise--triton")


def test_auto_picks_triton_only_on_cuda_where_it_tiles():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_backend("auto") == "chunkwise--torch"
    assert resolve_backend("auto", cpu) == "chunkwise--torch"
    assert resolve_backend("auto", cuda) == "chunkwise--triton"
    assert resolve_backend("auto", cuda, (16, 16), 16, torch.bfloat16) == "chunkwise--triton"
    assert resolve_backend("auto", cuda, (256, 512), 32) == "chunkwise--triton"
    assert resolve_backend("auto", cuda, (8, 64)) == "chunkwise--torch"  # too small to tile
    assert resolve_backend("auto", cuda, (512, 64)) == "chunkwise--torch"  # key dim past one tile
    assert resolve_backend("auto", cuda, chunk_size=128) == "chunkwise--torch"
    assert resolve_backend("auto", cuda, dtype=torch.float64) == "chunkwise--torch"


def test_other_chunk_sizes_round_to_a_supported_one():
    from kernels.gla.triton import chunk_length

    assert [chunk_length(c, 1000) for c in (1, 8, 16, 24, 32, 48, 64, 128)] == [16, 16, 16, 16, 32, 32, 64, 64]
    assert chunk_length(64, 5) == 16 and chunk_length(64, 33) == 64 and chunk_length(32, 17) == 32


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_a_gpu():
    """Lower every GLA kernel to PTX and cubin for sm_90 in bf16 and fp32 (no interpreter); about a minute."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "kernels.gla.triton.compile_check", "--arch", "90"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 2 * 11  # bf16 and fp32 x 11 (kernel, bonus) variants


GPU_CASES = [(2, 4, 1000, 64, 64, 64, "vector", False), (1, 2, 777, 128, 128, 32, "vector", True),
             (1, 2, 300, 256, 96, 16, "scalar", False), (2, 2, 515, 64, 256, 64, "fixed_vector", True)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", GPU_CASES, ids=["B{}-H{}-S{}-DK{}-DV{}-L{}-{}-bonus{}".format(*c) for c in GPU_CASES])
def test_gpu_matches_the_reference(case, dtype):
    """Against chunkwise--torch in float64 on the GPU (the step loop is too slow at these S); decays down to
    exp(-20). fp32: IEEE products, so ~1e-6 expected, 1e-4 allows for the GPU's exp; bf16 as in the mLSTM tests.
    The reference runs on the inputs rounded to ``dtype`` (what the kernel sees), so the tolerance measures the
    kernel's rounding, not the inputs' (against unrounded inputs the first GPU run saw 2.8e-2 on a scalar
    d log_decay)."""
    B, H, S, DK, DV, chunk, kind, bonus = case
    inputs = gla_inputs(B, H, S, DK, DV, kind, bonus, with_state=True, min_log_decay=-20.0)
    cuda = {n: None if t is None else t.cuda().to(dtype).double() for n, t in inputs.items()}
    ref = gla_run("chunkwise--torch", cuda, torch.float64, 64)
    out = gla_run("chunkwise--triton", cuda, dtype, chunk)
    ratio = 1e-4 if dtype == torch.float32 else 2e-2
    for name in ref:
        assert_close(name, ref[name], out[name], ratio)
