"""Mamba (selective state space model, Gu & Dao 2023): pre-RMSNorm residual blocks around the Mamba mixer.

Mixer: x (B, L, D) -> in-projection to x, z (width E = expand * D); causal depthwise conv + SiLU on x;
(dt, B, C) = x_proj(x); delta = softplus(dt_proj(dt)); y = selective_scan(x, delta, A = -exp(A_log), B, C, D);
y *= SiLU(z); out-projection. The scan is pure PyTorch: on a GPU a doubling scan inside chunks with a carried state
across chunks (few kernel launches), on a CPU the step-by-step loop (fewer and smaller tensors: ~4x faster at batch
16, 256 steps, width 256 x 16 states), at batches below 16 over the chunks of every sequence at once; with
``scan_backend="cuda"`` (or "auto" on CUDA tensors) the optional ``mamba-ssm`` kernel runs instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone
from ..components import CausalConv1d, ResidualStack
from ..config import BackboneConfig


# On a CPU the loop's cost per step is fixed overhead at small batches and memory traffic at large ones. Below
# CPU_LOOP_MIN_BATCH the two-level scan runs its loops over about CPU_LOOP_ROWS rows (batch x chunks). Scan fwd+bwd,
# 16,384 tokens, 256 x 16 states, 2 cores: batch 1 x 16,384 2.8 s -> 0.32 s, 8 x 2,048 0.61 -> 0.33 s; at batch
# 16 both take about 0.33-0.35 s, at 32 x 512 the plain loop is faster (0.25 s, two-level 0.33 s): the read-out of
# the carried states costs about a third of the scan.
CPU_LOOP_MIN_BATCH, CPU_LOOP_ROWS = 16, 64


@dataclass
class MambaConfig(BackboneConfig):
    name: str = "mamba"
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: Optional[int] = None  # None: ceil(D / 16)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    scan_backend: str = "auto"  # torch | cuda (mamba-ssm) | auto (cuda when installed and on CUDA tensors)
    scan_chunk_size: int = 32
    norm_eps: float = 1e-5


@torch.compiler.disable  # a loop over time: compiled, it would unroll into one graph node per step
def selective_scan_loop(u, delta, A, B, C, D, h0=None, *, decays: list | None = None):
    """Reference: a loop over time. u, delta (B, L, E); A (E, N); B, C (B, L, N); D (E) -> y (B, L, E), h (B, E, N).
    Each step's decay exp(delta_t A) (B, E, N) is appended to ``decays`` when a list is given (the two-level scan
    reuses them; otherwise none outlives its step, which matters without autograd)."""
    h = h0 if h0 is not None else u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for u_t, d_t, b_t, c_t in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):
        decay = torch.exp(d_t[..., None] * A)
        if decays is not None:
            decays.append(decay)
        h = decay * h + (d_t * u_t)[..., None] * b_t[:, None, :]
        ys.append((h * c_t[:, None, :]).sum(-1) + D * u_t)
    return torch.stack(ys, 1), h


def _doubling_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of h_t = a_t h_{t-1} + b_t along dim 1 (Hillis-Steele): returns (prod a_{<=t}, h_t from 0).

    log2(T) steps; products of decays <= 1 only, so nothing overflows (unlike exp(-cumsum) forms)."""
    T, offset = a.shape[1], 1
    while offset < T:
        b = torch.cat([b[:, :offset], a[:, offset:] * b[:, :-offset] + b[:, offset:]], dim=1)
        a = torch.cat([a[:, :offset], a[:, offset:] * a[:, :-offset]], dim=1)
        offset *= 2
    return a, b


@torch.compiler.disable  # a loop over chunks: compiled, it would unroll into one graph node per chunk
def selective_scan_chunked(u, delta, A, B, C, D, h0=None, chunk_size: int = 32):
    """Same results as ``selective_scan_loop``; parallel inside chunks of ``chunk_size`` steps."""
    Bsz, L, E = u.shape
    h = h0 if h0 is not None else u.new_zeros(Bsz, E, A.shape[1])
    ys = []
    for start in range(0, L, chunk_size):
        sl = slice(start, start + chunk_size)
        d, uu, bb, cc = delta[:, sl], u[:, sl], B[:, sl], C[:, sl]
        decay = torch.exp(d[..., None] * A)  # (B, T, E, N)
        drive = (d * uu)[..., None] * bb[:, :, None, :]
        cum_decay, states = _doubling_scan(decay, drive)
        states = states + cum_decay * h[:, None]  # add the carried state
        ys.append((states * cc[:, :, None, :]).sum(-1) + D * uu)
        h = states[:, -1]
    return torch.cat(ys, 1), h


@torch.compiler.disable  # loops over positions and chunks, as above
def selective_scan_two_level(u, delta, A, B, C, D, h0=None, chunk_size: int = 32):
    """Same results as ``selective_scan_loop`` with 2 chunk_size + S / chunk_size sequential steps instead of S.

    1. The loop runs over the positions of every chunk at once (the chunks as more batch rows), each chunk from a
       zero state: y_local and each chunk's own end state.
    2. A loop over the chunks carries the state across them: H_{c+1} = decay_c H_c + own end state_c.
    3. Each position adds its chunk's carried-in state, decayed to it, C_t . (decay * H_c), by a second loop over
       the chunks' positions (the first loop's decays reused: one product and one read-out per step).
    The decays are exp of delta * A <= 0, so nothing overflows. With a fixed number of tokens per batch the
    loop in 1 sees the same tensors at every context length (batch x chunks rows), so the time per token stays flat
    where the step-by-step loop slows down at small batches (one step per position)."""
    Bsz, S, E = u.shape
    L = max(1, min(chunk_size, S))
    NC = -(-S // L)
    pad = NC * L - S
    if pad:  # padded positions: delta 0 (no decay, no input), so the state passes them unchanged
        u, delta, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (u, delta, B, C))

    def rows(t):  # (Bsz, NC * L, X) -> (Bsz * NC, L, X)
        return t.reshape(Bsz * NC, L, t.shape[-1])

    decays = []  # each step's exp(delta_t A), (Bsz * NC, E, N)
    y, own_end = selective_scan_loop(rows(u), rows(delta), A, rows(B), rows(C), D, decays=decays)
    total = torch.exp(delta.reshape(Bsz, NC, L, E).sum(2)[..., None] * A)  # each chunk's decay, (Bsz, NC, E, N)
    h = h0 if h0 is not None else u.new_zeros(Bsz, E, A.shape[1])
    carried = []  # the state entering each chunk
    for total_c, own_c in zip(total.unbind(1), own_end.reshape(Bsz, NC, E, -1).unbind(1)):
        carried.append(h)
        h = torch.addcmul(own_c, total_c, h)
    # the carried-in states decayed to every position and read out, again a loop over the chunks' positions
    # (elementwise over (Bsz * NC, E, N) per step: the same small tensors as the loop above)
    g = torch.stack(carried, 1).reshape(Bsz * NC, E, -1)
    readout = []
    for decay_t, c_t in zip(decays, rows(C).unbind(1)):
        g = decay_t * g
        readout.append(torch.matmul(g, c_t[..., None])[..., 0])
    y = y + torch.stack(readout, 1)
    return y.reshape(Bsz, NC * L, E)[:, :S], h


def _mamba_ssm_scan():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as err:
        raise RuntimeError("scan_backend=cuda needs the mamba-ssm package on a CUDA machine "
                           "(pip install mamba-ssm); use scan_backend=torch otherwise") from err
    return selective_scan_fn


class MambaMixer(nn.Module):
    """(x (B, L, D), state (conv state, ssm state h (B, E, N))) -> (y, state)."""

    def __init__(self, config: MambaConfig, num_blocks: int):
        super().__init__()
        c, D = config, config.embedding_dim
        E, N = c.expand * D, c.d_state
        self.config, self.dt_rank = c, c.dt_rank or math.ceil(D / 16)
        self.in_proj = nn.Linear(D, 2 * E, bias=False)
        self.conv = CausalConv1d(E, c.d_conv)
        self.x_proj = nn.Linear(E, self.dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, E, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, D, bias=False)
        # dt bias: softplus^-1 of dt ~ log-uniform in [dt_min, dt_max]; dt weights U(+-dt_rank^-0.5)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(E) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        dt = dt.clamp(min=c.dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.out_proj.weight /= math.sqrt(num_blocks)  # pre-norm residual rescaling

    def _scan(self, x, delta, A, Bm, Cm, h0, return_state: bool):
        c = self.config
        use_cuda = c.scan_backend == "cuda" or (c.scan_backend == "auto" and x.is_cuda and h0 is None)
        if c.scan_backend == "auto" and use_cuda:
            try:
                _mamba_ssm_scan()
            except RuntimeError:
                use_cuda = False
        if use_cuda:
            if h0 is not None:
                raise ValueError("the mamba-ssm scan cannot start from a state; use scan_backend=torch to continue")
            y, h = _mamba_ssm_scan()(x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                                    Bm.transpose(1, 2).contiguous(), Cm.transpose(1, 2).contiguous(), self.D.float(),
                                    return_last_state=True)
            return y.transpose(1, 2), h
        if c.scan_backend not in ("torch", "auto", "cuda"):
            raise ValueError(f"scan_backend must be torch, cuda or auto, got {c.scan_backend!r}")
        if not x.is_cuda:  # on a CPU the loop is ~4x faster than the doubling scan (and holds less)
            batch, length = x.shape[:2]
            if batch >= CPU_LOOP_MIN_BATCH or length == 1:
                return selective_scan_loop(x, delta, A, Bm, Cm, self.D, h0)
            chunk = -(-length * batch // CPU_LOOP_ROWS)  # batch x chunks ~ CPU_LOOP_ROWS rows in the loop
            return selective_scan_two_level(x, delta, A, Bm, Cm, self.D, h0, chunk_size=chunk)
        return selective_scan_chunked(x, delta, A, Bm, Cm, self.D, h0, c.scan_chunk_size)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        N = self.config.d_state
        conv_state, h = state if state is not None else (None, None)
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs, conv_state = self.conv(xs, conv_state)
        xs = F.silu(xs)
        dt, Bm, Cm = self.x_proj(xs).split([self.dt_rank, N, N], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        y, h = self._scan(xs, delta, A, Bm, Cm, h, state is not None)
        return self.out_proj(y.to(x.dtype) * F.silu(z)), (conv_state, h)


class _MambaBlock(nn.Module):
    def __init__(self, config: MambaConfig, num_blocks: int):
        super().__init__()
        self.norm = nn.RMSNorm(config.embedding_dim, eps=config.norm_eps)
        self.mixer = MambaMixer(config, num_blocks)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer(self.norm(x), state)
        return x + y, state


class Mamba(Backbone):
    """Mamba backbone: ``num_blocks`` residual Mamba blocks and a final RMSNorm. Untied by default, as counted in
    Table 7; the registry's "mamba_nowt" is the untied variant the MQAR experiments keep beside a tied "mamba"."""

    config_class = MambaConfig

    def __init__(self, config: MambaConfig):
        super().__init__(config)
        blocks = [_MambaBlock(config, config.num_blocks) for _ in range(config.num_blocks)]
        self.stack = ResidualStack(blocks, nn.RMSNorm(config.embedding_dim, eps=config.norm_eps))

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)
