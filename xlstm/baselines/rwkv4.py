"""RWKV-4 (Peng et al., 2023): pre-LN residual blocks of time-mixing (the WKV recurrence) and channel-mixing.

Time mixing, per channel, with token shift x' = mix * x_t + (1 - mix) * x_{t-1}:
    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})
with decay w = exp(time_decay) > 0 and bonus u = time_first; output W_o (sigmoid(r) * wkv). The WKV runs in the
numerically stable form that carries (a, b, p) = (numerator, denominator, their common exponent): a loop over time
(``wkv_stable``, the reference; GPU and single steps) or, on a CPU, parallel inside chunks (``wkv_chunked``).
Channel mixing: sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2 with hidden 4 D.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..backbone import Backbone
from ..components import ResidualStack
from ..config import BackboneConfig


WKVState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # a, b, p, each (B, D)


@dataclass
class RWKV4Config(BackboneConfig):
    name: str = "rwkv4"
    ffn_factor: int = 4


def wkv_zero_state(k: torch.Tensor) -> WKVState:
    """The empty state for keys k (B, T, D): a = b = 0 and the exponent p = -inf (no term yet)."""
    zeros = k.new_zeros(k.shape[0], k.shape[2])
    return zeros, zeros, torch.full_like(zeros, float("-inf"))


@torch.compiler.disable  # a loop over time: compiled, it would unroll into one graph node per step
def wkv_stable(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               state: WKVState | None = None) -> tuple[torch.Tensor, WKVState]:
    """w, u (D,) with w > 0; k, v (B, T, D) -> wkv (B, T, D), final (a, b, p). All exponentials are of
    differences to the running maximum, so nothing overflows whatever the size of k."""
    a, b, p = state if state is not None else wkv_zero_state(k)
    out = []
    for k_t, v_t in zip(k.unbind(1), v.unbind(1)):
        bonus = u + k_t
        q = torch.maximum(p, bonus)
        e1, e2 = torch.exp(p - q), torch.exp(bonus - q)
        out.append((e1 * a + e2 * v_t) / (e1 * b + e2))
        decayed = p - w
        q = torch.maximum(decayed, k_t)
        e1, e2 = torch.exp(decayed - q), torch.exp(k_t - q)
        a, b, p = e1 * a + e2 * v_t, e1 * b + e2, q
    return torch.stack(out, 1), (a, b, p)


def _wkv_chunks(w, u, k, v, state: WKVState) -> tuple[torch.Tensor, WKVState]:
    """``wkv_stable`` over whole chunks: k, v (B, NC, L, D) -> wkv (B, NC, L, D) and the final (a, b, p).

    Inside a chunk, position t reads position s <= t with log weight lam[t, s] = k_s - (t-1-s) w (u + k_t at
    s = t) and the chunk-start state with p - t w; every exponential is taken against their max at t (detached),
    so nothing overflows. The chunk-start states come from a scan over chunks of their end states, whose exponent
    p' = max(p - L w, max_s k_s - (L-1-s) w) is the loop's own running max."""
    L = k.shape[2]
    pos = torch.arange(L, device=k.device, dtype=k.dtype)
    lag = (pos[:, None] - 1 - pos[None, :])[..., None]  # t - 1 - s, (L, L, 1)
    diag = torch.eye(L, dtype=torch.bool, device=k.device)[..., None]
    causal = torch.ones(L, L, dtype=torch.bool, device=k.device).tril()[..., None]
    decay = torch.where(diag, u, torch.where(causal, -lag * w, float("-inf")))  # (L, L, D)
    to_end = k - (L - 1 - pos)[:, None] * w  # log weight of position s in its chunk's end state, (B, NC, L, D)
    with torch.no_grad():
        p_local = to_end.max(dim=2).values
    weight = torch.exp(to_end - p_local[:, :, None])
    a_local, b_local = (weight * v).sum(2), weight.sum(2)  # (B, NC, D), in units of p_local
    a, b, p = state
    starts = []
    for a_j, b_j, p_j in zip(a_local.unbind(1), b_local.unbind(1), p_local.unbind(1)):
        starts.append((a, b, p))
        decayed = p - L * w
        with torch.no_grad():
            p_new = torch.maximum(decayed, p_j)
        carry, add = torch.exp(decayed - p_new), torch.exp(p_j - p_new)
        a, b, p = carry * a + add * a_j, carry * b + add * b_j, p_new
    a0, b0, p0 = (torch.stack(t, 1)[:, :, None] for t in zip(*starts))  # (B, NC, 1, D)
    lam = k[:, :, None] + decay  # (B, NC, L (t), L (s), D)
    from_start = p0 - pos[:, None] * w  # (B, NC, L, D)
    with torch.no_grad():
        top = torch.maximum(lam.max(dim=3).values, from_start)
    e = torch.exp(lam - top[:, :, :, None])
    e0 = torch.exp(from_start - top)
    num = (e * v[:, :, None]).sum(3) + e0 * a0
    den = e.sum(3) + e0 * b0
    return num / den, (a, b, p)


@torch.compiler.disable  # a loop over chunks: compiled, it would unroll into one graph node per chunk
def wkv_chunked(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: WKVState | None = None,
                chunk_size: int = 16) -> tuple[torch.Tensor, WKVState]:
    """Same results as ``wkv_stable`` (values, final state, gradients), parallel inside chunks of ``chunk_size``
    steps: B x T x chunk_size x D temporaries instead of T steps of small ops. The last T mod chunk_size steps
    run as one shorter chunk."""
    B, T, D = k.shape
    state = state if state is not None else wkv_zero_state(k)
    L = min(chunk_size, T)
    whole = T - T % L
    out, state = _wkv_chunks(w, u, k[:, :whole].reshape(B, -1, L, D), v[:, :whole].reshape(B, -1, L, D), state)
    outs = [out.reshape(B, whole, D)]
    if whole < T:
        rest, state = _wkv_chunks(w, u, k[:, None, whole:], v[:, None, whole:], state)
        outs.append(rest[:, 0])
    return torch.cat(outs, 1), state


def _shift(x: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} for every t (zeros, or the previous call's last input, before the first position)."""
    first = previous[:, None] if previous is not None else torch.zeros_like(x[:, :1])
    return torch.cat([first, x[:, :-1]], dim=1)


class TimeMix(nn.Module):
    def __init__(self, dim: int, layer: int, num_layers: int):
        super().__init__()
        ratio_0_to_1 = layer / max(num_layers - 1, 1)
        ratio_1_to_0 = 1.0 - layer / num_layers
        position = torch.arange(dim) / dim
        # the RWKV-4 inits: decay from slow to fast over channels (faster in deeper layers), zigzag bonus
        self.time_decay = nn.Parameter(-5 + 8 * (torch.arange(dim) / max(dim - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(dim)]) * 0.5
        self.time_first = nn.Parameter(torch.full((dim,), 0.3).log() + zigzag)
        self.mix_k = nn.Parameter(position ** ratio_1_to_0)
        self.mix_v = nn.Parameter(position ** ratio_1_to_0 + 0.3 * ratio_0_to_1)
        self.mix_r = nn.Parameter(position ** (0.5 * ratio_1_to_0))
        self.key, self.value, self.receptance = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.output = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.output.weight)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        previous, wkv_state = state if state is not None else (None, None)
        shifted = _shift(x, previous)
        k = self.key(x * self.mix_k + shifted * (1 - self.mix_k))
        v = self.value(x * self.mix_v + shifted * (1 - self.mix_v))
        r = self.receptance(x * self.mix_r + shifted * (1 - self.mix_r))
        # on a CPU the chunked form is 2x (batch 32 x 512 steps) to 18x (1 x 16,384) faster than the loop, fwd+bwd
        # (README, Speed); elsewhere, and for single steps, the loop
        wkv_fn = wkv_chunked if x.device.type == "cpu" and x.shape[1] > 1 else wkv_stable
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32  # half precision runs in float32
        wkv, wkv_state = wkv_fn(torch.exp(self.time_decay.to(ct)), self.time_first.to(ct), k.to(ct), v.to(ct),
                                wkv_state)
        return self.output(torch.sigmoid(r) * wkv.to(x.dtype)), (x[:, -1], wkv_state)


class ChannelMix(nn.Module):
    def __init__(self, dim: int, hidden: int, layer: int, num_layers: int):
        super().__init__()
        ratio_1_to_0 = 1.0 - layer / num_layers
        position = torch.arange(dim) / dim
        self.mix_k = nn.Parameter(position ** ratio_1_to_0)
        self.mix_r = nn.Parameter(position ** ratio_1_to_0)
        self.key, self.value = nn.Linear(dim, hidden, bias=False), nn.Linear(hidden, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.value.weight)

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        shifted = _shift(x, previous)
        k = torch.relu(self.key(x * self.mix_k + shifted * (1 - self.mix_k))).square()
        r = torch.sigmoid(self.receptance(x * self.mix_r + shifted * (1 - self.mix_r)))
        return r * self.value(k), x[:, -1]


class _RWKV4Block(nn.Module):
    def __init__(self, config: RWKV4Config, layer: int):
        super().__init__()
        D, L = config.embedding_dim, config.num_blocks
        self.ln0 = nn.LayerNorm(D) if layer == 0 else None  # RWKV normalises the embedding once, in block 0
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.time_mix = TimeMix(D, layer, L)
        self.channel_mix = ChannelMix(D, config.ffn_factor * D, layer, L)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        tm_state, cm_previous = state if state is not None else (None, None)
        if self.ln0 is not None:
            x = self.ln0(x)
        y, tm_state = self.time_mix(self.ln1(x), tm_state)
        x = x + self.dropout(y)
        y, cm_previous = self.channel_mix(self.ln2(x), cm_previous)
        return x + self.dropout(y), (tm_state, cm_previous)


class RWKV4(Backbone):
    config_class = RWKV4Config

    def __init__(self, config: RWKV4Config):
        super().__init__(config)
        blocks = [_RWKV4Block(config, i) for i in range(config.num_blocks)]
        self.stack = ResidualStack(blocks, nn.LayerNorm(config.embedding_dim))

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)
