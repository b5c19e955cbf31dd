import sys

from . import mlstm, slstm

USAGE = "usage: python -m kernels.bench mlstm|slstm [options]   (CUDA only; --help per benchmark)"

if len(sys.argv) < 2 or sys.argv[1] not in ("mlstm", "slstm"):
    print(USAGE, file=sys.stderr)
    sys.exit(2)
sys.exit({"mlstm": mlstm, "slstm": slstm}[sys.argv[1]].main(sys.argv[2:]))
