"""The paper's model sizes, in one table: family -> size -> the config fields that make it.

Sources: App. B.2 / Table 7 of the xLSTM paper for xLSTM, Llama, Mamba and RWKV-4 (dims, blocks, heads); the GPT-3
paper's Table 2.1 for GPT-3 (the xLSTM paper's Table 1 uses its 350M model); Table 2 (top) for the two LSTM
baselines, which exist at the 350M class only. Every registered model adds vocab 50304 and context 2048.
``tests/xlstm/test_sizes.py`` checks this table against ``results/paper/table7_model_sizes.csv``.
"""
from __future__ import annotations

import math

PAPER_VOCAB = 50304
PAPER_CONTEXT = 2048
SIZES = ("125M", "350M", "760M", "1.3B", "2.7B")


def _dims(table: dict[str, tuple]) -> dict[str, dict]:
    """(embedding_dim, num_blocks[, num_heads]) rows -> config fields."""
    names = ("embedding_dim", "num_blocks", "num_heads")
    return {size: dict(zip(names, row)) for size, row in table.items()}


def _table7_ladder(heads) -> dict[str, dict]:
    """The D / blocks ladder of RWKV-4 and HGRN2 in Table 7 (12 blocks at 125M, 24 above, 32 at 2.7B)."""
    rows = {"125M": (768, 12), "350M": (1024, 24), "760M": (1536, 24), "1.3B": (2048, 24), "2.7B": (2560, 32)}
    return _dims({size: (d, blocks, heads(d)) for size, (d, blocks) in rows.items()})


def llama_mlp_hidden(dim: int) -> int:
    """Llama's SwiGLU width: 8/3 D rounded up to a multiple of 64 (2048 / 2752 / 4096 / 5504 / 6848)."""
    return int(math.ceil(8 * dim / 3 / 64) * 64)


PAPER_SIZES: dict[str, dict[str, dict]] = {
    "xlstm": _dims({"125M": (768, 24, 4), "350M": (1024, 48, 4), "760M": (1536, 48, 4), "1.3B": (2048, 48, 4),
                    "2.7B": (2560, 64, 4)}),
    "llama": _dims({"125M": (768, 12, 12), "350M": (1024, 24, 16), "760M": (1536, 24, 16), "1.3B": (2048, 24, 16),
                    "2.7B": (2560, 32, 32)}),
    "gpt3": _dims({"125M": (768, 12, 12), "350M": (1024, 24, 16), "760M": (1536, 24, 16), "1.3B": (2048, 24, 32),
                   "2.7B": (2560, 32, 32)}),
    "mamba": _dims({"125M": (768, 24), "350M": (1024, 48), "760M": (1536, 48), "1.3B": (2048, 48),
                    "2.7B": (2560, 64)}),
    "rwkv4": _dims({"125M": (768, 12), "350M": (1024, 24), "760M": (1536, 24), "1.3B": (2048, 24),
                    "2.7B": (2560, 32)}),
    # Table 2, top: the vanilla 24-layer LSTM of width 1536 (607.8M) and "+ up-projection backbone", 24 blocks of
    # width 1024 with a non-gated GeLU feed-forward x4 (505.9M)
    "lstm": _dims({"350M": (1536, 24)}),
    "lstm_block": {"350M": dict(embedding_dim=1024, num_blocks=24, ffn_gated=False, ffn_proj_factor=4.0)},
    # Table 7: RWKV-5/6 with head size 64, HGRN2 with expand ratio 128 (heads = D / 128). Its 2.7B rows print
    # "2048 / 24", a typo: their counts (3194.7 / 3021.9 / 2795.4) need D 2560 and 32 blocks, the RWKV-4 layout.
    "rwkv5": _table7_ladder(lambda d: d // 64),
    "rwkv6": _table7_ladder(lambda d: d // 64),
    "hgrn2": _table7_ladder(lambda d: d // 128),
    # Table 1 gives these only at 350M (D 1024, 24 blocks; flash-linear-attention's head counts: RetNet 8, GLA 4);
    # the other sizes take the same Table 7 ladder of D and blocks (not paper numbers: no counts to check them by).
    # RetNet at 350M: value width 1 x D (its config default) and Llama's 2752-wide SwiGLU give 431.8M (Table 1: 431);
    # flash-linear-attention's defaults (value width 2 D, SwiGLU hidden ratio 2) give 417.7M (see the README).
    "retnet": {size: {**dims, "mlp_hidden": llama_mlp_hidden(dims["embedding_dim"])}
               for size, dims in _table7_ladder(lambda d: 8).items()},
    "gla": _table7_ladder(lambda d: 4),
    "hgrn": _table7_ladder(lambda d: 1),
    "h3": _table7_ladder(lambda d: 1),
    "hyena": _table7_ladder(lambda d: 1),
}


# The CPU ladder of the small-scale language-model experiments: widths 64 / 128 / 192 with the paper's proportions
# (xLSTM and Mamba stack twice the blocks of Llama, GPT-3 and RWKV-4 at one width; xLSTM keeps 4 heads, the
# Transformers a head dimension of 32). Not paper sizes: the label names the width; records give the parameters.
def _cpu_ladder(blocks: int, heads) -> dict[str, dict]:
    return {f"w{d}": {"embedding_dim": d, "num_blocks": blocks, "num_heads": heads(d)} for d in (64, 128, 192)}


CPU_SIZES: dict[str, dict[str, dict]] = {
    "xlstm": _cpu_ladder(4, lambda d: 4), "mamba": _cpu_ladder(4, lambda d: 1),
    "llama": _cpu_ladder(2, lambda d: d // 32), "gpt3": _cpu_ladder(2, lambda d: d // 32),
    "rwkv4": _cpu_ladder(2, lambda d: 1),
    # Table 2 (top): the vanilla LSTM is 1.5x wider than the others at 350M (1536 vs 1024, 24 layers); the LSTM block
    # stack has the Transformers' block count with a non-gated feed-forward x4
    "lstm": {f"w{d}": {"embedding_dim": d * 3 // 2, "num_blocks": 2, "num_heads": 1} for d in (64, 128, 192)},
    "lstm_block": {name: {**dims, "num_heads": 1, "ffn_gated": False, "ffn_proj_factor": 4.0}
                   for name, dims in _cpu_ladder(2, lambda d: 1).items()},
    # the Baselines II models have the Transformers' block count at one width (as in Table 7) and a head size of 32
    **{family: _cpu_ladder(2, lambda d: d // 32) for family in ("gla", "hgrn2", "rwkv5", "rwkv6")},
    "retnet": {name: {**dims, "mlp_hidden": llama_mlp_hidden(dims["embedding_dim"])}
               for name, dims in _cpu_ladder(2, lambda d: d // 32).items()},
    **{family: _cpu_ladder(2, lambda d: 1) for family in ("hgrn", "h3", "hyena")},
}


def paper_size(family: str, size: str) -> dict:
    """Config fields of ``family`` at a paper size (or a CPU-ladder size), vocab and context included."""
    sizes = {**PAPER_SIZES.get(family, {}), **CPU_SIZES.get(family, {})}
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for {family}; paper sizes: {', '.join(sizes) or 'none'}")
    return {"vocab_size": PAPER_VOCAB, "context_length": PAPER_CONTEXT, **sizes[size]}
