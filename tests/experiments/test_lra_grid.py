"""experiment=lra: Table 5's settings per task at paper scale, the lr x schedule search, the paper's models, and the
small grid's reduced tasks."""
from __future__ import annotations

import pytest

from experiments.config import resolve

from .helpers import compose_cfg, grid_points

TABLE_5 = {  # task: blocks, width, batch, steps (the paper's Table 5); weight decay from S5's scripts
    "lra_retrieval": (6, 128, 64, 100_000, 0.05), "lra_listops": (8, 128, 32, 80_000, 0.04),
    "lra_pathfinder": (6, 192, 64, 500_000, 0.03), "lra_image": (6, 512, 64, 180_000, 0.07),
    "lra_image_rgb": (6, 512, 64, 180_000, 0.07)}


@pytest.mark.parametrize("task", list(TABLE_5))
def test_paper_scale_takes_table_5_per_task(tmp_path, task):
    overrides = ["experiment=lra", "scale=paper", f"task={task}", "model=xlstm_1_0"]
    cfg = compose_cfg(tmp_path, *overrides)
    resolve(cfg, {o.split("=")[0] for o in overrides})
    assert (cfg.model.num_blocks, cfg.model.embedding_dim, cfg.task.batch_size, cfg.trainer.max_steps,
            cfg.optim.weight_decay) == TABLE_5[task]
    assert cfg.optim.restarts == 3 and cfg.trainer.precision == "bf16-mixed"


def test_paper_grid_searches_lr_and_schedule_for_the_papers_models(tmp_path):
    grid = grid_points(tmp_path, "lra", "paper")
    assert grid["task"] == list(TABLE_5)
    assert set(grid["model"]) == {"llama", "mamba", "rwkv4", "lstm", "lstm_block", "xlstm_0_1", "xlstm_1_0"}
    assert grid["optim.lr"] == ["1e-3", "6e-4", "1e-4"] and grid["optim.schedule"] == ["cosine", "cosine_restarts"]


def test_small_grid_reduces_the_tasks_and_labels_the_stand_in(tmp_path):
    grid = grid_points(tmp_path, "lra", "small")
    assert grid["task"] == ["lra_listops", "lra_pathfinder", "lra_image"]
    overrides = ["experiment=lra", "scale=small", "task=lra_image", "model=llama"]
    cfg = compose_cfg(tmp_path, *overrides)
    resolve(cfg, {o.split("=")[0] for o in overrides})
    assert (cfg.task.source, cfg.task.pool, cfg.model.embedding_dim) == ("fashion_mnist", 2, 64)
