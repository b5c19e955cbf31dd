"""Every config composes and instantiates; registry keys and option files match; typed errors name the key."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import tasks
import xlstm
from experiments.train import CONFIG_DIR, SuiteError, check_names, make_logger, options, precompose, validate

from .helpers import compose_cfg, grid_points


@pytest.mark.parametrize("option", options("model"))
def test_model_option_builds_and_runs(tmp_path, option):
    cfg = compose_cfg(tmp_path, f"model={option}", "model.embedding_dim=16")
    backbone = xlstm.build_backbone(OmegaConf.to_object(cfg.model))
    y = backbone(torch.randn(2, 5, 16))
    assert y.shape == (2, 5, 16) and torch.isfinite(y).all()


@pytest.mark.parametrize("option", options("task"))
def test_task_option_builds_batches(tmp_path, option):
    small = ["task.num_train=64", "task.num_eval=8"] if option == "mqar" else []  # its default set is 100k
    cfg = compose_cfg(tmp_path, f"task={option}", "task.batch_size=4", *small)
    task = tasks.build_task(OmegaConf.to_object(cfg.task))
    batch = task.train_batch(0)
    assert batch["tokens"].shape[0] == 4 and batch["tokens"].max() < task.vocab_size
    assert (batch["targets"] != tasks.IGNORE).any()


def test_registry_keys_match_option_files():
    for key in xlstm.MODELS:
        path = CONFIG_DIR / "model" / f"{xlstm.option_name(key)}.yaml"
        assert path.exists(), f"model {key!r} has no {path}"
        assert OmegaConf.load(path).name == key
    for option in options("model"):
        assert OmegaConf.load(CONFIG_DIR / "model" / f"{option}.yaml").name in xlstm.MODELS
    for key in tasks.TASKS:
        assert OmegaConf.load(CONFIG_DIR / "task" / f"{key}.yaml").name == key
    assert set(options("task")) == set(tasks.TASKS)


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_option_composes(tmp_path, option):
    cfg = compose_cfg(tmp_path, f"trainer={option}")
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(SuiteError, match="no CUDA device"):
            validate(cfg)
    else:
        validate(cfg)


@pytest.mark.parametrize("option", options("logger"))
def test_logger_option_instantiates(tmp_path, option):
    cfg = compose_cfg(tmp_path, f"logger={option}", "logger.mode=disabled" if option == "wandb" else "seed=0")
    assert make_logger(cfg, tmp_path, "test-run") is not None


@pytest.mark.parametrize("experiment", options("experiment"))
@pytest.mark.parametrize("scale", options("scale"))
def test_experiment_grid_names_are_valid(tmp_path, experiment, scale):
    grid = grid_points(tmp_path, experiment, scale)
    assert "model" in grid, f"{experiment}/{scale} must sweep the models"
    for group in ("model", "task"):
        for choice in grid.get(group, []):
            assert choice in options(group), f"{experiment}/{scale}: unknown {group} {choice!r}"
    cfg = compose_cfg(tmp_path, f"experiment={experiment}", f"scale={scale}")
    assert cfg.experiment == experiment and cfg.scale.name == scale
    validate(cfg)


def test_every_grid_file_belongs_to_an_experiment_and_scale():
    for path in (CONFIG_DIR / "grid").glob("*/*.yaml"):
        assert path.parent.name in options("experiment"), path
        assert path.stem in options("scale"), path
    for experiment in options("experiment"):
        for scale in options("scale"):
            assert (CONFIG_DIR / "grid" / experiment / f"{scale}.yaml").exists()


@pytest.mark.parametrize("override, key", [
    ("model.embeding_dim=3", "model.embeding_dim"),
    ("trainer.max_steps=abc", "trainer.max_steps"),
    ("task.batch_size=1.5", "task.batch_size"),
    ("optim.betas=oops", "optim.betas"),
])
def test_bad_key_or_value_fails_at_compose_naming_the_key(override, key):
    with pytest.raises(SuiteError) as err:
        precompose([override])
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, listed", [
    ("model=nope", "lstm"), ("task=nope", "parity"), ("experiment=nope", "formal_languages"),
    ("model=lstm,nope", "lstm_block"), ("scale=huge", "smoke"),
])
def test_unknown_names_list_the_valid_ones(override, listed):
    with pytest.raises(SuiteError) as err:
        check_names([override])
    assert "nope" in str(err.value) or "huge" in str(err.value)
    assert listed in str(err.value)


def test_bad_values_caught_before_training(tmp_path):
    for override, message in [("optim.lr=-1", "optim.lr"), ("optim.schedule=linear", "optim.schedule"),
                              ("trainer.max_steps=0", "trainer.max_steps")]:
        with pytest.raises(SuiteError, match=message):
            validate(compose_cfg(tmp_path, override))
