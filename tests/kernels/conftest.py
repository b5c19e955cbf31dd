"""Kernel tests: every freshly allocated tensor is NaN-filled, so a kernel that leaves part of an output unwritten
fails its comparison instead of passing on leftover zeros."""
import pytest
import torch

_empty, _empty_like, _new_empty = torch.empty, torch.empty_like, torch.Tensor.new_empty


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
