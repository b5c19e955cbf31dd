"""Times the official ``xlstm`` package (PyPI, NeurIPS'24 model) at the configuration our CPU benchmark uses.

Run with the interpreter of an environment that has the official package (its name clashes with ours):
    /path/to/venv/bin/python experiments/bench/official_xlstm.py --arch "xlstm[1:0]" --blocks 4 --dim 128 --ctx 2048
Prints one JSON line with the timings. Its mLSTM layer is the quadratic parallel form; its sLSTM runs the
"vanilla" (PyTorch loop) backend on CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                   xLSTMLMModel, xLSTMLMModelConfig)

spec = importlib.util.spec_from_file_location("timing", Path(__file__).with_name("timing.py"))
timing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timing)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, required=True)
    p.add_argument("--slstm-at", type=int, nargs="*", default=[])
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=4)),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4, conv1d_kernel_size=4,
                                   bias_init="powerlaw_blockdependent"),
            feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=a.ctx, num_blocks=a.blocks, embedding_dim=a.dim, slstm_at=a.slstm_at, vocab_size=a.vocab)
    model = xLSTMLMModel(config)
    model.reset_parameters()
    tokens = torch.randint(0, a.vocab, (a.batch, a.ctx))
    result = timing.time_lm(model, tokens, reps=a.reps)
    result["params"] = sum(p.numel() for p in model.parameters())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
