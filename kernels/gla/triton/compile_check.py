"""``python -m kernels.gla.triton.compile_check [--arch 80 90] [--dtype bf16 fp32]``: lower every Triton GLA kernel
to PTX and cubin for NVIDIA targets without a GPU (as ``python -m kernels.compile_check`` does for the mLSTM and sLSTM
kernels), so code that only the interpreter has run is known to compile for real hardware. Needs TRITON_INTERPRET
unset. Shapes: chunk 64 (four sub-blocks), a 128-wide key tile, two 64-wide value tiles, with and without bonus.
"""
from __future__ import annotations

import argparse
import os
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
    compute = "fp64" if dtype == "fp64" else "fp32"
    out = {}
    for name in fn.arg_names:
        if name in constexprs:
            out[name] = "constexpr"
        elif name in INTS:
            out[name] = "i32"
        else:
            out[name] = f"*{dtype}" if name in TYPED_PTRS else f"*{compute}"
    return out


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: unset TRITON_INTERPRET to compile for GPUs", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget

    p = argparse.ArgumentParser(prog="python -m kernels.gla.triton.compile_check")
    p.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    p.add_argument("--dtype", nargs="+", default=["bf16", "fp32"])
    a = p.parse_args(argv)
    failures = 0
    for dtype in a.dtype:
        for fn, constexprs in kernels(dtype):
            for arch in a.arch:
                sig = signature(fn, constexprs, dtype)
                src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=constexprs)
                try:
                    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32))
                    status = f"ok ({len(compiled.asm['cubin'])} bytes of cubin)"
                except Exception as err:  # report every kernel, then fail
                    failures += 1
                    status = f"FAILED: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                bonus = " bonus" if constexprs.get("BONUS") else ""
                print(f"triton {triton.__version__} sm_{arch} {dtype} {fn.__name__}{bonus}: {status}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
