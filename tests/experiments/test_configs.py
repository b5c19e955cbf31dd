"""Every config composes and instantiates; registry keys and option files match; typed errors name the key."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import tasks
import xlstm
from experiments.config import (CONFIG_DIR, SuiteError, check_command, check_names, options, resolve,
                                validate)
from experiments.train import make_logger

from tasks.lm.task import LanguageModellingTask
from tasks.lra.task import LRATask
from tests.tasks.lra.test_smoke_runs import write_fixtures

from .helpers import compose_cfg, grid_points


@pytest.mark.parametrize("option", options("model"))
def test_model_option_builds_and_runs(tmp_path, option):
    cfg = compose_cfg(tmp_path, f"model={option}", "model.embedding_dim=16")
    backbone = xlstm.build_backbone(OmegaConf.to_object(cfg.model))
    y = backbone(torch.randn(2, 5, 16))
    assert y.shape == (2, 5, 16) and torch.isfinite(y).all()


@pytest.mark.parametrize("option", options("task"))
def test_task_option_builds_batches(tmp_path, lm_data_dir, option):
    small = {"mqar": ["task.num_train=64", "task.num_eval=8"],  # its default set is 100k
             "slimpajama": ["task.context_length=32"], "lm_local": ["task.context_length=32"],
             "lra_listops": ["task.min_length=10", "task.max_length=40", "task.num_train=16", "task.num_val=4",
                             "task.num_test=4"],
             "lra_pathfinder": ["task.resolution=20", "task.contour_length=6", "task.num_train=16", "task.num_val=4",
                                "task.num_test=4"]}.get(option, [])
    data_dir = lm_data_dir
    if option.startswith("lra_"):  # the file-backed LRA tasks read fixtures in their real formats
        data_dir = tmp_path / "data"
        write_fixtures(data_dir)
    cfg = compose_cfg(tmp_path, f"task={option}", "task.batch_size=4", f"paths.data_dir={data_dir}", *small)
    task = tasks.build_task(OmegaConf.to_object(cfg.task), cfg.paths.data_dir)
    if isinstance(task, LanguageModellingTask):  # reads the prepared fixture shards
        batch = next(iter(task.train_dataloader()))
    else:
        batch = task.train_batch(0)
    assert batch["tokens"].shape[0] == 4
    if isinstance(task, LRATask):  # one label per row
        assert batch["targets"].shape == (4,)
        assert 0 <= batch["targets"].min() <= batch["targets"].max() < task.num_classes
    else:
        assert batch["tokens"].max() < task.vocab_size and (batch["targets"] != tasks.IGNORE).any()


def test_registry_keys_match_option_files():
    assert set(options("model")) == set(xlstm.MODELS)
    for key, spec in xlstm.MODELS.items():
        assert OmegaConf.load(CONFIG_DIR / "model" / f"{key}.yaml").name == key
        cfg = compose_cfg(Path("/tmp"), f"model={key}")  # the composed option carries the entry's defining values
        assert OmegaConf.get_type(cfg.model) is spec.backbone.config_class
        for field, value in spec.defaults.items():
            assert cfg.model[field] == value, (key, field)
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
    assert any(k in ("model", "variant") or k.startswith("model.") for k in grid), (
        f"{experiment}/{scale} must sweep the models, a model setting or an ablation's rows")
    for choice in grid.get("variant", []):
        assert choice.startswith(f"{experiment}/") and choice in options("variant"), choice
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
        check_command([override])
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


def _one_line_error(*overrides: str) -> str:
    with pytest.raises(SuiteError) as err:
        check_command(list(overrides))
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("overrides, expected", [
    (["+trainer.max_stepz=3"], "unknown key trainer.max_stepz"),
    (["+model.foo=1"], "unknown key model.foo"),
    (["++task.nope=1"], "unknown key task.nope"),
    (["+nonsense=1"], "unknown key nonsense"),
    (["task=mqar", "task.name=parity"], "task.name=parity does not match task=mqar"),
    (["task=parity", "task.name=even_pairs"], "task.name=even_pairs does not match task=parity"),
    (["model=lstm", "model.name=llama"], "model.name=llama does not match model=lstm"),
    (["task.batch_size=0"], "task.batch_size must be >= 1, got 0"),
    (["task=mqar", "task.batch_size=-1"], "task.batch_size must be >= 0"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval must be >= 1, got 0"),
    (["trainer.checkpoint_every_n_steps=0"], "trainer.checkpoint_every_n_steps must be >= 1"),
    (["trainer.precision=8-bit"], "trainer.precision must be"),
    (["model.num_heads=0"], "model.num_heads must be >= 1, got 0"),
    (["model.embedding_dim=0"], "model.embedding_dim must be >= 1, got 0"),
    (["seed=-1"], "seed must be >= 0, got -1"),
    (["optim.betas=[0.9,1.5]"], "optim.betas must be"),
    (["task.train_min_length=0"], "task.train_min_length must be"),
    (["experiment=mqar", "task.context_length=100", "task.batch_size=0"], "paper gives none for context 100"),
])
def test_values_a_run_cannot_use_end_in_one_line_naming_the_key(overrides, expected):
    assert expected in _one_line_error(*overrides)


def test_hydra_sweeps_are_checked_on_their_first_point_and_names_on_every_value():
    assert "unknown model 'nope'" in _one_line_error("model=lstm,nope")
    assert "task.batch_size must be >= 1" in _one_line_error("task.batch_size=0,4")
    cfg, grid = check_command(["experiment=formal_languages", "scale=small", "model=llama,lstm"])
    assert grid["model"] == ["llama", "lstm"] and cfg.model.name == "llama" and len(grid["task"]) == 4


def test_experiment_model_settings_apply_per_model_and_yield_to_the_command_line(tmp_path):
    def resolved(*overrides):
        cfg = compose_cfg(tmp_path, "experiment=formal_languages", *overrides)
        resolve(cfg, {o.split("=")[0] for o in overrides})
        return cfg

    for option in ("xlstm_0_1", "xlstm_1_1", "xlstm_7_1"):  # one setting, every xLSTM
        cfg = resolved(f"model={option}")
        assert cfg.model.slstm_conv_kernel == 0 and cfg.model.slstm_recurrent_init == "standard"
    assert resolved("model=xlstm_1_1", "model.slstm_conv_kernel=4").model.slstm_conv_kernel == 4
    assert "slstm_conv_kernel" not in resolved("model=llama").model
    mqar = {m: compose_cfg(tmp_path, "experiment=mqar", f"model={m}") for m in ("mamba", "mamba_nowt")}
    for cfg in mqar.values():
        resolve(cfg, set())
    assert mqar["mamba"].model.tie_embeddings and not mqar["mamba_nowt"].model.tie_embeddings
    bad = compose_cfg(tmp_path, "+model_settings={xlstm_*: {slstm_conv_kernl: 0}}", "model=xlstm_1_1")
    with pytest.raises(SuiteError, match=r"model_settings\['xlstm_\*'\].slstm_conv_kernl: model xlstm_0_1 has no"):
        resolve(bad, set())
    with pytest.raises(SuiteError, match="matches no model"):
        resolve(compose_cfg(tmp_path, "+model_settings={gru: {num_blocks: 1}}"), set())


def test_the_task_protocol_is_resolved_into_the_config_the_run_records(tmp_path):
    cfg = compose_cfg(tmp_path, "experiment=mqar_long", "scale=paper", "task.context_length=2048",
                      "task.num_kv_pairs=48", "optim.lr=1e-2")
    notes = resolve(cfg, set())
    assert cfg.task.batch_size == 24 and cfg.optim.lr == 1e-3 and cfg.optim.min_lr is None
    assert cfg.optim.min_lr_ratio == 0.01  # "1e-4 and 1e-5": 1 % of the peak, every run decays
    assert cfg.trainer.max_steps == 64 * (100_000 // 24) and cfg.model.vocab_size == 8192
    assert any(n.startswith("trainer.max_steps: 1 -> ") for n in notes)
    assert resolve(cfg, set()) == []  # resolving the resolved config changes nothing
    parity = compose_cfg(tmp_path, "task=parity")
    resolve(parity, set())
    assert parity.model.vocab_size == 3  # the task's vocabulary, recorded in the model config


def test_paper_scale_refuses_the_cpu_unless_asked(tmp_path):
    from experiments.config import grid_summary, refuse_paper_scale_on_cpu

    cfg, grid = check_command(["experiment=formal_languages", "scale=paper"])
    runs, line = grid_summary(grid, cfg)
    assert runs == 12 * 15 * 2 * 3 and "1080 runs" in line and "100000 steps" in line  # Figure 4: 12 models
    with pytest.raises(SuiteError, match="scale.allow_cpu=true"):
        refuse_paper_scale_on_cpu(cfg, runs)
    cfg, _ = check_command(["experiment=formal_languages", "scale=paper", "scale.allow_cpu=true"])
    refuse_paper_scale_on_cpu(cfg, runs)


@pytest.mark.parametrize("width, heads", [(16, 1), (32, 2), (64, 4), (128, 8), (256, 16), (512, 32)])
def test_mqar_heads_follow_the_width(tmp_path, width, heads):
    cfg = compose_cfg(tmp_path, "experiment=mqar", "scale=paper", f"model.embedding_dim={width}")
    assert cfg.model.num_heads == heads
    assert compose_cfg(tmp_path, "experiment=mqar", "model.num_heads=4").model.num_heads == 4  # still overridable


def test_the_mqar_floor_decays_every_run_of_the_grid():
    from experiments.module import warmup_cosine

    for lr in (1e-2, 2.15e-3, 4.6e-4, 1e-4):
        cfg, _ = check_command(["experiment=mqar", "scale=paper", f"optim.lr={lr}", "scale.allow_cpu=true"])
        schedule = warmup_cosine(OmegaConf.to_object(cfg.optim), cfg.trainer.max_steps)
        assert schedule(cfg.trainer.max_steps) == pytest.approx(0.01)  # the end of every run: 1 % of its peak


def test_synthetic_experiments_clip_the_recurrent_gradient_and_use_the_standard_recurrent_init(tmp_path):
    for experiment in ("formal_languages", "mqar", "mqar_long", "mqar_extrapolation"):
        cfg = compose_cfg(tmp_path, f"experiment={experiment}", "model=xlstm_1_1")
        resolve(cfg, set())
        assert cfg.model.slstm_recurrent_grad_clip == 10.0, experiment
    formal = compose_cfg(tmp_path, "experiment=formal_languages", "model=xlstm_0_1")
    resolve(formal, set())
    assert (formal.model.slstm_bias_init, formal.model.slstm_recurrent_init) == ("powerlaw_blockdependent", "standard")


def _resolved_first_point(tmp_path, data_dir, experiment: str, scale: str, **point: str):
    from experiments.config import resolve

    overrides = {k: v[0] for k, v in grid_points(tmp_path, experiment, scale).items()}
    overrides.update(point)
    cfg = compose_cfg(tmp_path, f"experiment={experiment}", f"scale={scale}", f"paths.data_dir={data_dir}",
                      *(f"{k}={v}" for k, v in overrides.items()))
    resolve(cfg, set(overrides))
    return cfg


def test_the_language_model_paper_grids_are_the_paper_recipe(tmp_path, lm_data_dir):
    cfg = _resolved_first_point(tmp_path, lm_data_dir, "slimpajama", "paper", model="xlstm_7_1")
    assert (cfg.task.context_length, cfg.task.batch_size, cfg.trainer.max_steps) == (2048, 256, 28170)
    assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.decay_steps, cfg.optim.min_lr_ratio) == (1e-3, 750, 30000,
                                                                                                    0.1)
    assert (list(cfg.optim.betas), cfg.optim.eps, cfg.optim.weight_decay) == ([0.9, 0.95], 1e-5, 0.1)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.model.vocab_size == 50304  # GPT-2's 50257, padded
    assert (cfg.model.embedding_dim, cfg.model.num_blocks, cfg.model.num_heads) == (1024, 48, 4)
    assert not cfg.model.tie_embeddings
    assert _resolved_first_point(tmp_path, lm_data_dir, "slimpajama", "paper", model="gpt3").model.tie_embeddings
    # Table 3: Table 7's 300B learning rates, and batch 512 for 300k steps at 1.3B
    big = _resolved_first_point(tmp_path, lm_data_dir, "slimpajama_300b", "paper", model="xlstm_7_1",
                                model_size="1.3B")
    assert (big.optim.lr, big.task.batch_size, big.trainer.max_steps, big.model.embedding_dim) == (5e-4, 512, 300000,
                                                                                                  2048)
    small = _resolved_first_point(tmp_path, lm_data_dir, "slimpajama_300b", "paper", model="rwkv4", model_size="125M")
    assert (small.optim.lr, small.task.batch_size, small.trainer.max_steps) == (6e-4, 256, 600000)
    long = _resolved_first_point(tmp_path, lm_data_dir, "extrapolation", "paper", model="llama")
    assert list(long.task.eval_context_lengths) == [4096, 8192, 16384] and long.optim.lr == 1e-3


def test_model_size_and_size_settings_refuse_bad_values(tmp_path, lm_data_dir):
    with pytest.raises(SuiteError, match="model_size: unknown size '3B' for llama"):
        _resolved_first_point(tmp_path, lm_data_dir, "slimpajama", "paper", model="llama", model_size="3B")
    from experiments.config import apply_model_size

    cfg = _resolved_first_point(tmp_path, lm_data_dir, "slimpajama", "paper", model="llama")
    cfg.size_settings = {"nomodel@350M": {"optim.lr": 1.0}}
    with pytest.raises(SuiteError, match="size_settings\\['nomodel@350M'\\]: keys are '<model glob>@<size>'"):
        apply_model_size(cfg, set())
    cfg.size_settings = {"llama@350M": {"optim.nope": 1.0}}
    with pytest.raises(SuiteError, match="no config key 'optim.nope'"):
        apply_model_size(cfg, set())
