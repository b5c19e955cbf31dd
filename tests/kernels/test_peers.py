"""Independent comparisons with the public peer packages (mlstm-kernels natives, flashrnn vanilla) on CPU.

Skipped when the packages are not installed (they come with the ``dev`` extra). Our op starts its stabilizer at
-inf and the peers at 0; with eps = 0 the output does not depend on the stabilizer, so the two agree to rounding.
"""
from __future__ import annotations

import pytest
import torch

from kernels.mlstm import mlstm
from kernels.slstm import slstm
from kernels.testing import assert_close, mlstm_inputs

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("backend", ["parallel--torch", "chunkwise--torch", "recurrent--torch"])
def test_mlstm_matches_mlstm_kernels_native_autograd(backend):
    mk = pytest.importorskip("mlstm_kernels.torch")
    peer = mk.get_mlstm_kernel("chunkwise--native_autograd")
    inputs, _ = mlstm_inputs(2, 3, 64, 16, 8)  # the peer's native chunkwise needs S % chunk == 0
    a = [t.clone().requires_grad_() for t in inputs]
    b = [t.clone().requires_grad_() for t in inputs]
    h_peer, (c_peer, n_peer, m_peer) = peer(*a, return_last_states=True, chunk_size=16, eps=0.0)
    h, (c, n, m) = mlstm(*b, backend=backend, chunk_size=16, eps=0.0, return_last_state=True)
    assert_close("h", h_peer, h, 1e-12)
    # states compared in true units: C * exp(m)
    assert_close("C", c_peer * torch.exp(m_peer)[..., None], c * torch.exp(m)[..., None, None], 1e-12)
    assert_close("n", n_peer * torch.exp(m_peer), n * torch.exp(m)[..., None], 1e-12)
    w = torch.randn(h.shape, dtype=h.dtype, generator=torch.Generator().manual_seed(2))
    (h_peer * w).sum().backward()
    (h * w).sum().backward()
    for name, x, y in zip(["dq", "dk", "dv", "di", "df"], a, b):
        assert_close(name, x.grad, y.grad, 1e-10)


def test_slstm_matches_flashrnn_vanilla():
    fr = pytest.importorskip("flashrnn")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 11, 4, 3, 8, generator=g, dtype=torch.float64)
    R = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64) / 3
    b = torch.randn(4, 3, 8, generator=g, dtype=torch.float64)
    a = [t.clone().requires_grad_() for t in (x, R, b)]
    c = [t.clone().requires_grad_() for t in (x, R, b)]
    h_peer = fr.flashrnn(*a, function="slstm", backend="vanilla", dtype="float64")[0][0]  # (y, c, n, m)[0]
    h = slstm(*c)
    assert_close("h", h_peer, h, 1e-12)
    (h_peer ** 2).sum().backward()  # the peer supports gradients through y only
    (h ** 2).sum().backward()
    for name, u, v in zip(["dx", "dR", "db"], a, c):
        assert_close(name, u.grad, v.grad, 1e-10)
