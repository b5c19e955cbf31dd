"""``python -m kernels.compile_check [--arch 80 90] [--dtype bf16 fp32]``: compile every Triton kernel of the suite
for NVIDIA targets on a machine without a GPU (Triton lowers to PTX and cubin with its bundled ptxas), so code that
only the interpreter has run is known to compile for real hardware, and fits its shared memory. Needs TRITON_INTERPRET
unset.
"""
from __future__ import annotations

import argparse
import os
import sys

# runtime scalars by name; every other upper-case argument is a float32 pointer unless it is an input/output
INTS = {"S", "DK", "DV", "NC", "B", "NH", "DH", "T"}  # ("DH" is also the sLSTM's DH_OUT pointer's prefix only)
FLOATS = {"scale", "eps", "clip"}
TYPED_PTRS = {"Q", "K", "V", "H", "X", "DH_OUT"}  # tensors in the input dtype
# the most shared memory one program may use (opt-in maximum per block): A100 163 KB, H100/H200 227 KB
SHARED_MEMORY_LIMIT = {80: 166_912, 90: 232_448}


def kernels(dtype: str) -> list[tuple[object, dict]]:
    """(jit function, constexpr values) for representative shapes: 64-wide tiles, chunk 64."""
    from .mlstm.triton.chunkwise_bwd import chunk_grads, chunk_states_bwd
    from .mlstm.triton.chunkwise_fwd import chunk_outputs_fwd, chunk_states_fwd
    from .mlstm.triton.recurrent import recurrent_fwd
    from .slstm.triton.kernels import slstm_bwd, slstm_fwd

    prec = "ieee" if dtype == "fp32" else "tf32"
    tiles = dict(L=64, BK=64, BV=64, PREC=prec)
    return [
        (chunk_states_fwd, tiles),
        (chunk_outputs_fwd, {**tiles, "NK": 2}),
        (chunk_states_bwd, tiles),
        (chunk_grads, {**tiles, "NK": 2, "NV": 4}),
        (recurrent_fwd, dict(BK=128, BV=64)),
        (slstm_fwd, dict(BB=16, BO=64, NT=3, PREC=prec)),  # DH = 192
        (slstm_bwd, dict(BB=16, BO=64, NT=3, PREC=prec, CLIP=True)),
    ]


def argument_types(fn, constexprs: dict, dtype: str, ints: set[str], typed_ptrs: set[str],
                   floats: frozenset[str] = frozenset(), compute: str = "fp32", float_type: str = "fp32"
                   ) -> dict[str, str]:
    """Triton's signature of ``fn``: constexprs by value, ``ints`` i32, ``floats`` scalars of ``float_type``,
    ``typed_ptrs`` pointers in the input ``dtype``, every other argument a pointer in the ``compute`` dtype."""
    out = {}
    for name in fn.arg_names:
        if name in constexprs:
            out[name] = "constexpr"
        elif name in ints:
            out[name] = "i32"
        elif name in floats:
            out[name] = float_type
        else:
            out[name] = f"*{dtype}" if name in typed_ptrs else f"*{compute}"
    return out


def signature(fn, constexprs: dict, dtype: str) -> dict[str, str]:
    """Float scalars as an eager launch passes them (float32) for bf16 inputs and as torch.compile passes them
    (float64) for float32 inputs: the kernels cast them, so both compile."""
    return argument_types(fn, constexprs, dtype, INTS, TYPED_PTRS, FLOATS,
                          float_type="fp64" if dtype == "fp32" else "fp32")


def compile_kernels(prog: str, kernels, signature, argv: list[str] | None = None) -> int:
    """The compile-check command of a kernel family: ``kernels(dtype)`` gives (jit function, constexpr values) pairs,
    ``signature(fn, constexprs, dtype)`` their argument types; each is lowered for every --arch and --dtype and
    reported on its own line (a kernel compiled with ``BONUS`` set is labelled so), then the status says if any
    failed."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: unset TRITON_INTERPRET to compile for GPUs", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget

    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    p.add_argument("--dtype", nargs="+", default=["bf16", "fp32"])
    a = p.parse_args(argv)
    failures = 0
    for dtype in a.dtype:
        for fn, constexprs in kernels(dtype):
            for arch in a.arch:
                src = triton.compiler.ASTSource(fn=fn, signature=signature(fn, constexprs, dtype), constexprs=constexprs)
                try:
                    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32))
                    shared, limit = compiled.metadata.shared, SHARED_MEMORY_LIMIT.get(arch)
                    if limit is not None and shared > limit:  # the launch would fail with "out of resource"
                        raise RuntimeError(f"needs {shared} bytes of shared memory, sm_{arch} has {limit}")
                    status = f"ok ({len(compiled.asm['cubin'])} bytes of cubin, {shared} bytes of shared memory)"
                except Exception as err:  # report every kernel, then fail
                    failures += 1
                    status = f"FAILED: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                bonus = " bonus" if constexprs.get("BONUS") else ""
                print(f"triton {triton.__version__} sm_{arch} {dtype} {fn.__name__}{bonus}: {status}", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return compile_kernels("python -m kernels.compile_check", kernels, signature, argv)


if __name__ == "__main__":
    sys.exit(main())
