"""Language modelling across processes: two DDP CPU processes train the same steps as one process, and a run
resumed on another number of processes continues the same data order (the final weights agree)."""
from __future__ import annotations

import shutil

import pytest
import torch

from .helpers import cli, compose_cfg, records

POINT = ["task=lm_local", "model=llama", "model_size=w64", "task.context_length=32", "task.batch_size=4",
         "task.eval_batch_size=4", "task.eval_tokens=128", "optim.warmup_steps=1", "optim.decay_steps=4",
         "trainer.val_check_interval=4", "trainer.precision=32-true"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


def _weights(record: dict) -> dict[str, torch.Tensor]:
    return torch.load(record["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]


def test_a_run_resumed_on_another_world_size_matches_an_uninterrupted_one(tmp_path, lm_data_dir):
    data = f"paths.data_dir={lm_data_dir}"
    straight = cli(tmp_path / "a", *POINT, data, "trainer.max_steps=4")
    assert straight.returncode == 0, straight.stderr[-3000:]
    (uninterrupted,) = records(tmp_path / "a")

    first_half = cli(tmp_path / "b", *POINT, data, "trainer.max_steps=2", *DDP, timeout=600)  # 2 processes
    assert first_half.returncode == 0, first_half.stderr[-3000:]
    (half,) = records(tmp_path / "b")
    assert half["config"]["trainer"]["devices"] == 2 and half["steps"] == 2

    # the 2-process checkpoint at step 2 becomes the interrupted 4-step run's last checkpoint; one process goes on
    rid = uninterrupted["run_id"]
    last = tmp_path / "c" / "ckpt" / "adhoc" / "smoke" / rid / "last.ckpt"
    last.parent.mkdir(parents=True)
    shutil.copy(half["checkpoint"], last)
    resumed = cli(tmp_path / "c", *POINT, data, "trainer.max_steps=4", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (continued,) = records(tmp_path / "c")
    assert continued["run_id"] == rid and continued["steps"] == 4
    assert continued["throughput"]["tokens_seen"] == uninterrupted["throughput"]["tokens_seen"] == 4 * 4 * 32

    # the same windows per step; only the order of float sums differs (a mean over 2 x 2 sequences against one
    # over 4): weights agree to 1e-6 after 4 AdamW steps of lr 1e-3
    a, c = _weights(uninterrupted), _weights(continued)
    assert a.keys() == c.keys()
    for name in a:
        torch.testing.assert_close(c[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    assert continued["metrics"]["val"]["ppl"] == pytest.approx(uninterrupted["metrics"]["val"]["ppl"], rel=1e-5)


def test_fsdp_on_a_cpu_is_one_line(tmp_path, lm_data_dir):
    proc = cli(tmp_path, *POINT, f"paths.data_dir={lm_data_dir}", "trainer=fsdp", "trainer.accelerator=cpu")
    assert proc.returncode == 2 and "trainer=ddp" in proc.stderr and "Traceback" not in proc.stderr


def test_the_fsdp_and_slurm_options_compose(tmp_path):
    cfg = compose_cfg(tmp_path, "trainer=fsdp", "trainer.activation_checkpointing=true", "trainer.compile=true",
                      "hydra/launcher=slurm", hydra_node=True)
    assert cfg.trainer.strategy == "fsdp" and cfg.trainer.fsdp_sharding == "FULL_SHARD"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
