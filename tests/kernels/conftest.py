"""Kernel tests: every freshly allocated tensor is NaN-filled, so a kernel that leaves part of an output unwritten
fails its comparison instead of passing on leftover zeros."""
import pytest
import torch
import torch.utils._device

_empty, _empty_like, _new_empty = torch.empty, torch.empty_like, torch.Tensor.new_empty
# torch caches the set of its tensor constructors on first use (what `with torch.device(...)` redirects); filled while
# the wrappers below were in place (torch.compile's tracing asks for it), it would hold them instead of torch.empty,
# and every later `with torch.device("meta")` in the session would build on the CPU. Fill it with the real ones now.
torch.utils._device._device_constructors()


def _nan_fill(t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point() and not t.is_meta:
        t.fill_(float("nan"))
    return t


@pytest.fixture(autouse=True)
def nan_poisoned_allocations(monkeypatch):
    monkeypatch.setattr(torch, "empty", lambda *a, **k: _nan_fill(_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: _nan_fill(_empty_like(*a, **k)))
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *a, **k: _nan_fill(_new_empty(self, *a, **k)))
    yield
