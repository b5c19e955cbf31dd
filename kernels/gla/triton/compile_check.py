"""``python -m kernels.gla.triton.compile_check [--arch 80 90] [--dtype bf16 fp32]``: lower every Triton GLA kernel
to PTX and cubin for NVIDIA targets without a GPU (as ``python -m kernels.compile_check`` does for the mLSTM and sLSTM
kernels), so code that only the interpreter has run is known to compile for real hardware. Needs TRITON_INTERPRET
unset. Shapes: chunk 64 (four sub-blocks), a 128-wide key tile, two 64-wide value tiles, with and without bonus.
"""
from __future__ import annotations

import sys

INTS = {"S", "NH", "DK", "DV", "NC"}
TYPED_PTRS = {"Q", "K", "V", "DO", "O"}  # tensors in the input dtype; every other pointer is in the compute dtype


def kernels(dtype: str) -> list[tuple[object, dict]]:
    from .chunkwise_bwd import chunk_dqk, chunk_dv, chunk_states_bwd
    from .chunkwise_dg import chunk_dg
    from .chunkwise_fwd import chunk_outputs_fwd, chunk_states_fwd

    prec = "ieee" if dtype in ("fp32", "fp64") else "tf32"
    tiles = dict(L=64, SB=16, BK=128, BV=64, PREC=prec)
    out = [(chunk_states_fwd, tiles)]
    for bonus in (False, True):
        out += [(chunk_outputs_fwd, {**tiles, "BONUS": bonus}), (chunk_states_bwd, {**tiles, "BONUS": bonus}),
                (chunk_dv, {**tiles, "BONUS": bonus}), (chunk_dqk, {**tiles, "NV": 2, "BONUS": bonus}),
                (chunk_dg, {**tiles, "NV": 2, "BONUS": bonus})]
    return out


def signature(fn, constexprs: dict, dtype: str) -> dict[str, str]:
    from ...compile_check import argument_types

    return argument_types(fn, constexprs, dtype, INTS, TYPED_PTRS, compute="fp64" if dtype == "fp64" else "fp32")


def main(argv: list[str] | None = None) -> int:
    from ...compile_check import compile_kernels

    return compile_kernels("python -m kernels.gla.triton.compile_check", kernels, signature, argv)


if __name__ == "__main__":
    sys.exit(main())
