"""Building blocks shared by the xLSTM stack and the baselines: norms, feed-forward, residual blocks, inits."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from kernels.blockdiag import block_diagonal


def small_init_(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Normal init with std sqrt(2 / (5 D)) (in-projections, embeddings, LM head in the official xLSTM)."""
    return nn.init.normal_(weight, mean=0.0, std=math.sqrt(2.0 / (5.0 * dim)))


def wang_init_(weight: torch.Tensor, dim: int, num_blocks: int) -> torch.Tensor:
    """Normal init with std 2 / (num_blocks sqrt(D)) (out- and down-projections)."""
    return nn.init.normal_(weight, mean=0.0, std=2.0 / (max(num_blocks, 1) * math.sqrt(dim)))


def gpt2_init_(model: nn.Module, num_blocks: int,
               residual_outputs: tuple[str, ...] = ("mixer.out.weight", "mlp.down.weight"),
               linear_only: bool = False) -> None:
    """GPT-2's init of every 2-D parameter of ``model``: normal with std 0.02, and 0.02 / sqrt(2 num_blocks) for the
    residual output projections (names ending in ``residual_outputs``), so the residual stream's variance does not
    grow with depth. ``linear_only``: only nn.Linear weights, and their biases set to 0 (models whose other 2-D
    parameters, SSM or filter parameters, keep their own inits)."""
    linear_weights = {f"{m}.weight" if m else "weight" for m, mod in model.named_modules() if isinstance(mod, nn.Linear)}
    for name, p in model.named_parameters():
        if p.ndim == 2 and (not linear_only or name in linear_weights):
            scale = 1 / math.sqrt(2 * num_blocks) if name.endswith(residual_outputs) else 1.0
            nn.init.normal_(p, std=0.02 * scale)
        elif linear_only and name.endswith("bias") and name[:-len("bias")] + "weight" in linear_weights:
            nn.init.zeros_(p)


class LayerNorm(nn.Module):
    """LayerNorm with the weight parameterised as (1 + w), w initialised to 0, and an optional bias.

    This is the official xLSTM norm (weight=True, bias=False, eps 1e-5); the (1 + w) form lets weight decay pull the
    scale towards 1 rather than 0.
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), 1.0 + self.weight, self.bias, self.eps)


def _relu2(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "relu2": _relu2,
    "silu": F.silu,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def ffn_hidden_dim(dim: int, proj_factor: float, round_to: int) -> int:
    """Up-projection width: dim * factor rounded up to a multiple of ``round_to`` (1.3 * 768 = 998.4 -> 1024; the
    mLSTM's 2 * 40 = 80 -> 128 with the official multiple 64)."""
    return int(math.ceil(dim * proj_factor / round_to) * round_to)


class FeedForward(nn.Module):
    """Position-wise feed-forward: gated ``down(act(gate(x)) * up(x))`` or plain ``down(act(up(x)))``."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu", gated: bool = True, dropout: float = 0.0,
                 num_blocks: int = 1):
        super().__init__()
        self.gated, self.act = gated, activation(act)
        self.up = nn.Linear(dim, 2 * hidden if gated else hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        small_init_(self.up.weight, dim)
        wang_init_(self.down.weight, dim, num_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.dropout(self.down(self.act(gate) * up))
        return self.dropout(self.down(self.act(self.up(x))))


class ResidualBlock(nn.Module):
    """Pre-LN residual block: ``x += mixer(LN(x))``, then, with an FFN, ``x += FFN(LN(x))``.

    With an FFN it is the post-up-projection block (sLSTM block, LSTM (Block)); without, the pre-up-projection block
    (the up-projection lives inside the mLSTM mixer). The mixer maps ``(x (B, S, D), state) -> (y (B, S, D), state)``.
    """

    def __init__(self, dim: int, mixer: nn.Module, ffn: nn.Module | None):
        super().__init__()
        self.mixer_norm, self.mixer = LayerNorm(dim), mixer
        self.ffn_norm = LayerNorm(dim) if ffn is not None else None
        self.ffn = ffn

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer(self.mixer_norm(x), state)
        x = x + y
        if self.ffn is not None:
            x = x + self.ffn(self.ffn_norm(x))
        return x, state


class PreNormBlock(nn.Module):
    """Pre-norm block of the Transformers and the linear-attention baselines: ``x += mixer(norm1(x))``, then
    ``x += mlp(norm2(x))``. The mixer maps ``(x (B, S, D), state) -> (y, state)`` (a KV cache, a recurrent state)."""

    def __init__(self, norm1: nn.Module, mixer: nn.Module, norm2: nn.Module, mlp: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.mixer, self.norm2, self.mlp = norm1, mixer, norm2, mlp
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer(self.norm1(x), state)
        x = x + self.dropout(y)
        return x + self.dropout(self.mlp(self.norm2(x))), state


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``, no biases (Llama's MLP; flash-linear-attention's GatedMLP)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate, self.up = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class CausalConv1d(nn.Module):
    """Depthwise causal convolution over time with bias: x (B, S, C) -> (B, S, C).

    The state is the last ``kernel_size - 1`` inputs (B, K-1, C), so a sequence can be continued (or decoded one
    position at a time) with the same result as one call on the whole sequence."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # torch's Conv1d defaults
        nn.init.uniform_(self.bias, -1 / math.sqrt(kernel_size), 1 / math.sqrt(kernel_size))

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, S, C = x.shape
        if state is None:
            state = x.new_zeros(B, self.kernel_size - 1, C)
        padded = torch.cat([state.to(x.dtype), x], dim=1)  # (B, K-1+S, C)
        # y_t = b + sum_k w_k * padded_{t+k} (F.conv1d's cross-correlation) as K shifted multiply-adds in (B, S, C):
        # on a CPU about twice as fast as conv1d, which needs (B, C, S) copies both ways
        w = self.weight[:, 0].t().to(x.dtype)  # (K, C)
        y = torch.addcmul(self.bias.to(x.dtype), padded[:, :S], w[0])
        for k in range(1, self.kernel_size):
            y = torch.addcmul(y, padded[:, k:k + S], w[k])
        return y, padded[:, padded.shape[1] - (self.kernel_size - 1):]


class BlockDiagonalLinear(nn.Module):
    """Linear map with a block-diagonal weight and no bias: ``num_blocks`` independent (d/n x d/n) blocks.

    Used for the head-wise gate projections of the sLSTM (one block per head) and the q/k/v projections of the
    mLSTM (blocks of 4 channels). weight: (num_blocks, out_per_block, in_per_block)."""

    def __init__(self, dim: int, num_blocks: int):
        super().__init__()
        if dim % num_blocks:
            raise ValueError(f"dim {dim} is not divisible into {num_blocks} blocks")
        self.num_blocks, self.block = num_blocks, dim // num_blocks
        self.weight = nn.Parameter(torch.empty(num_blocks, self.block, self.block))
        small_init_(self.weight, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.together(x, self)[0]

    @staticmethod
    def together(x: torch.Tensor, *layers: "BlockDiagonalLinear") -> list[torch.Tensor]:
        """``[layer(x) for layer in layers]`` in one product (the layers' blocks stacked): fewer, larger ops, e.g.
        the mLSTM's q and k projections of the same input."""
        weight = layers[0].weight if len(layers) == 1 else torch.cat([layer.weight for layer in layers], dim=1)
        return block_diagonal(x, weight, parts=len(layers))


class MultiHeadNorm(nn.Module):
    """Layer norm per head (group norm with one group per head), weight only, parameterised as (1 + w):
    x (B, S, NH, DH) -> (B, S, NH * DH)."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-5):
        super().__init__()
        self.num_heads, self.eps = num_heads, eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, NH, DH = x.shape
        y = F.layer_norm(x.float(), (DH,), eps=self.eps).to(x.dtype).reshape(B, S, NH * DH)
        return y * (1.0 + self.weight)


class ResidualStack(nn.Module):
    """Blocks applied in order, then the final norm. Each block maps (x, state) -> (x, state); the stack's state is
    the list of the blocks' states. With ``activation_checkpointing`` a training forward keeps only each block's
    input and recomputes the block in the backward pass (memory for compute; the same values and gradients)."""

    def __init__(self, blocks: list[nn.Module], post_norm: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.post_norm = post_norm
        self.activation_checkpointing = False

    def forward(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        state = state if state is not None else [None] * len(self.blocks)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        new_state = []
        for block, block_state in zip(self.blocks, state):
            if recompute:
                x, block_state = torch.utils.checkpoint.checkpoint(block, x, block_state, use_reentrant=False)
            else:
                x, block_state = block(x, block_state)
            new_state.append(block_state)
        return self.post_norm(x), new_state


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """Every block of every residual stack in ``model`` (the units of activation checkpointing, compilation and
    FSDP wrapping)."""
    return [b for m in model.modules() if isinstance(m, ResidualStack) for b in m.blocks]


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> None:
    for m in model.modules():
        if isinstance(m, ResidualStack):
            m.activation_checkpointing = enabled


def compile_blocks(model: nn.Module) -> None:
    """``torch.compile`` each residual block in place (parameter names and checkpoints stay as without it)."""
    for block in residual_blocks(model):
        block.compile()
