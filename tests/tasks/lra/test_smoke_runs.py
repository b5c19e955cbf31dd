"""A smoke point of every LRA task trains and evaluates end to end (experiment=lra scale=smoke), the file-backed
tasks on fixtures in their real formats under paths.data_dir."""
from __future__ import annotations

import pytest

from experiments.train import run
from tests.experiments.helpers import compose_cfg

from .test_loaders import aan_line, write_aan, write_aclimdb, write_cifar_batches


def write_fixtures(data_dir):
    write_cifar_batches(data_dir / "lra" / "cifar10" / "cifar-10-batches-py")
    write_aclimdb(data_dir / "lra" / "imdb")
    pairs = [aan_line("1.0", "a study of parsing", "parsing with grammars"), aan_line("0.0", "speech", "vision")]
    write_aan(data_dir / "lra" / "aan", {"train": pairs * 4, "val": pairs, "test": pairs})


@pytest.mark.parametrize("task", ["lra_listops", "lra_pathfinder", "lra_image", "lra_image_rgb", "lra_retrieval",
                                  "lra_text"])
def test_lra_smoke_point(tmp_path, task):
    data_dir = tmp_path / "data"
    write_fixtures(data_dir)
    cfg = compose_cfg(tmp_path, "experiment=lra", "scale=smoke", f"task={task}", "model=xlstm_1_0",
                      "optim.lr=1e-3", "optim.schedule=cosine_restarts", f"paths.data_dir={data_dir}")
    record = run(cfg)
    assert record["status"] == "finished" and record["steps"] == 4
    for split in ("val", "test"):
        assert 0.0 <= record["metrics"][split]["acc"] <= 1.0
    assert record["config"]["optim"]["schedule"] == "cosine_restarts"
