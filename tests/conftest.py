"""Test-wide settings: offline, no wandb network, GPU tests skipped one by one without CUDA."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402

if not torch.cuda.is_available():  # before any @triton.jit is defined: the kernels run on CPU, interpreted
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lm_data_dir(tmp_path_factory):
    """``paths.data_dir`` with prepared ``lm_local`` and ``slimpajama`` fixture data (tests/lm_fixture.py)."""
    from tests.lm_fixture import prepare_fixture

    return prepare_fixture(tmp_path_factory.mktemp("lm_data"))
