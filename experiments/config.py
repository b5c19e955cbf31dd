"""The run config before training: Hydra's command line split from the overrides, names and keys checked, the
first grid point composed, and each run's config resolved (the experiment's per-model settings, the task's protocol)
and validated. Every problem a user can cause ends in one ``SuiteError`` line that names the key and what to do.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CHECKED_GROUPS = ("experiment", "model", "task", "scale", "trainer", "optim", "logger", "variant")


class SuiteError(Exception):
    """An error the user can fix; its message is the one line we print."""


def options(group: str) -> list[str]:
    """A group's option names; nested groups (``variant``) as ``folder/name``."""
    folder = CONFIG_DIR / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def split_argv(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Hydra's own flags (``--cfg job``, ``-m``, ``--info``, ...) parsed with Hydra's own parser; the rest are the
    overrides."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    return args, list(args.overrides)


def _parsed(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # Hydra's OverrideParseException and friends
        raise SuiteError(f"config: {_lines(err)}") from None


def explicit_keys(overrides: list[str]) -> set[str]:
    """The dotted keys the command line sets (``model.embedding_dim=64`` -> "model.embedding_dim")."""
    return {o.key_or_group for o in _parsed([o for o in overrides if not o.startswith("hydra.")])}


def check_names(overrides: list[str]) -> None:
    """Unknown group options (``model=foo``) fail before Hydra starts, in one line that lists the valid names."""
    for o in _parsed(overrides):
        key = o.key_or_group
        if key not in CHECKED_GROUPS:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        valid = options(key)
        for choice in values:
            if choice is not None and str(choice) not in valid:
                raise SuiteError(f"unknown {key} {choice!r}; valid {key} names: {', '.join(valid)}")


def _lines(err: BaseException | None) -> str:
    noise = ("To append", "reference_type", "object_type", "full_key")
    lines = []
    while err is not None:  # Hydra wraps the OmegaConf error that names the key and the reason
        lines += [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith(noise)]
        err = err.__cause__
    return "; ".join(dict.fromkeys(lines))


def _first_values(overrides: list[str]) -> list[str]:
    """Each sweep override (``a=1,2``) as its first value."""
    out = []
    for o in _parsed(overrides):
        if o.is_sweep_override():
            prefix = {"ADD": "+", "FORCE_ADD": "++"}.get(o.type.name, "")
            out.append(f"{prefix}{o.key_or_group}={next(iter(o.sweep_string_iterator()))}")
        else:
            out.append(o.input_line)
    return out


def compose(overrides: list[str], hydra_node: bool = False) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose("train", overrides=overrides, return_hydra_config=hydra_node)
    except Exception as err:  # Hydra and OmegaConf raise several types; all are config errors here
        raise SuiteError("config: " + _lines(err)) from None


def sweep(cfg_with_hydra: DictConfig, overrides: list[str]) -> dict[str, list[str]]:
    """The multirun's sweep: the grid's ``hydra.sweeper.params``, with command-line sweeps taking their keys over."""
    params = {k: str(v).split(",") for k, v in (cfg_with_hydra.hydra.sweeper.params or {}).items()}
    for o in _parsed(overrides):
        if o.is_sweep_override():
            params[o.key_or_group] = [str(v) for v in o.sweep_string_iterator()]
        elif o.key_or_group in params:
            params[o.key_or_group] = [o.input_line.split("=", 1)[1]]
    return params


def first_point(overrides: list[str], multirun: bool = False) -> tuple[DictConfig, dict[str, list[str]] | None]:
    """The composed config of the grid's first point (the first value of every sweep; with its ``hydra`` node), and
    the sweep when the command starts a multirun (None for a single run)."""
    head = compose(_first_values(overrides), hydra_node=True)
    from hydra.types import RunMode

    if not multirun and head.hydra.mode != RunMode.MULTIRUN:
        return head, None
    grid = sweep(head, overrides)
    point = [f"{k}={v[0]}" for k, v in grid.items()]
    return compose(_first_values(overrides) + point, hydra_node=True), grid


def unknown_keys(node: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, valid keys) for every key of a typed node that its dataclass does not have: Hydra lets ``+key``
    add keys even to typed nodes, where nothing would read them."""
    out: list[tuple[str, list[str]]] = []
    if not isinstance(node, DictConfig):
        return out
    schema = OmegaConf.get_type(node)
    typed = dataclasses.is_dataclass(schema)
    fields = [f.name for f in dataclasses.fields(schema)] if typed else []
    for key in node.keys():
        if key == "hydra":
            continue
        if typed and key not in fields:
            out.append((f"{prefix}{key}", fields))
        elif typed or prefix == "":
            out += unknown_keys(node._get_node(key), f"{prefix}{key}.")
    return out


def check_unknown_keys(cfg: DictConfig) -> None:
    for key, valid in unknown_keys(cfg):
        parent = key.rsplit(".", 1)[0] if "." in key else "the root config"
        raise SuiteError(f"unknown key {key}: {parent} has no such key, so nothing would read it (a + override "
                         f"adds keys only where the schema allows); valid: {', '.join(valid)}")


def apply_model_settings(cfg: DictConfig, explicit: set[str]) -> list[str]:
    """Write the experiment's ``model_settings`` for this run's model into ``cfg.model``; keys the command line set
    keep their value. Returns the "key=value" strings applied. Every pattern must name a registered model and every
    key must exist in the config of each model it matches."""
    from xlstm import MODELS

    applied = []
    for pattern, settings in (cfg.model_settings or {}).items():
        matches = [k for k in MODELS if fnmatch.fnmatchcase(k, pattern)]
        if not matches:
            raise SuiteError(f"model_settings[{pattern!r}] matches no model; models: {', '.join(MODELS)}")
        for key in settings:
            for name in matches:
                fields = {f.name for f in dataclasses.fields(MODELS[name].backbone.config_class)}
                if key not in fields:
                    raise SuiteError(f"model_settings[{pattern!r}].{key}: model {name} has no key {key!r}")
        if not fnmatch.fnmatchcase(cfg.model.name, pattern):
            continue
        for key, value in settings.items():
            if f"model.{key}" not in explicit:
                try:
                    cfg.model[key] = value
                except Exception as err:  # OmegaConf's validation errors name the key and the type
                    raise SuiteError(f"model_settings[{pattern!r}].{key}: {_lines(err)}") from None
                applied.append(f"model.{key}={value}")
    return applied


def apply_task_settings(cfg: DictConfig, explicit: set[str]) -> list[str]:
    """Write the experiment's ``task_settings`` {"<task glob>": {dotted key: value}} whose glob matches this run's
    task (e.g. the model width of the MQAR half of a study that also models language); keys the command line set
    keep their value. Every glob must name a registered task and every key must exist."""
    from tasks import TASKS

    applied = []
    for pattern, settings in (cfg.get("task_settings") or {}).items():
        if not any(fnmatch.fnmatchcase(name, pattern) for name in TASKS):
            raise SuiteError(f"task_settings[{pattern!r}] matches no task; tasks: {', '.join(TASKS)}")
        if fnmatch.fnmatchcase(cfg.task.name, pattern):
            applied += write_keys(cfg, settings, explicit, f"task_settings[{pattern!r}]")
    return applied


def write_keys(cfg: DictConfig, updates: dict, explicit: set[str], where: str) -> list[str]:
    """Write {dotted key: value} into ``cfg``, skipping keys the command line set; each key must exist. ``where``
    names the setting in the one-line error. Returns the "key=value" strings applied."""
    applied = []
    for key, value in updates.items():
        if key in explicit:
            continue
        if OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise SuiteError(f"{where}: no config key {key!r}")
        try:
            OmegaConf.update(cfg, key, value)
        except Exception as err:  # OmegaConf's validation errors name the key and the type
            raise SuiteError(f"{where}.{key}: {_lines(err)}") from None
        applied.append(f"{key}={value}")
    return applied


def apply_model_size(cfg: DictConfig, explicit: set[str]) -> list[str]:
    """``model_size=350M``: the paper's dims of this model's family at that size (``xlstm.sizes``; vocabulary and
    context come from the task), then the experiment's ``size_settings`` whose "<model glob>@<size>" key matches
    (e.g. ``"xlstm_*@1.3B": {optim.lr: 5e-4, task.batch_size: 512}``). Keys the command line set keep their value."""
    from xlstm import MODELS
    from xlstm.sizes import paper_size

    settings = cfg.get("size_settings") or {}
    for pattern in settings:
        glob, _, size = pattern.partition("@")
        if not size or not any(fnmatch.fnmatchcase(k, glob) for k in MODELS):
            raise SuiteError(f"size_settings[{pattern!r}]: keys are '<model glob>@<size>' naming a registered model, "
                             f"e.g. 'xlstm_*@350M'")
    size = cfg.get("model_size")
    if size is None:
        return []
    try:
        dims = paper_size(MODELS[cfg.model.name].family, size)
    except ValueError as err:
        raise SuiteError(f"model_size: {err}") from None
    updates = {f"model.{k}": v for k, v in dims.items() if k not in ("vocab_size", "context_length")}
    for pattern, values in settings.items():
        glob, _, at = pattern.partition("@")
        if at == size and fnmatch.fnmatchcase(cfg.model.name, glob):
            updates.update(values)
    return write_keys(cfg, updates, explicit, "size_settings / model_size")


def apply_protocol(cfg: DictConfig) -> list[str]:
    """Write the values the task's protocol fixes (steps from epochs, the paper's batch and lr rule, the model's
    vocabulary) into ``cfg``; returns "key: old -> new" for each value that changed."""
    from tasks import task_class

    if cfg.job == "speed":  # a speed job reads no data: the model's own vocabulary and context stand
        return []
    try:
        run = {key: OmegaConf.select(cfg, key) for key in cfg if key != "hydra"}
        run = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in run.items()}
        values = task_class(cfg.task.name).protocol(run)
    except ValueError as err:
        raise SuiteError(str(err)) from None
    changed = []
    for key, value in values.items():
        old = OmegaConf.select(cfg, key)
        if old != value:
            OmegaConf.update(cfg, key, value)
            changed.append(f"{key}: {old} -> {value}")
    return changed


def check_choices(cfg: DictConfig, choices: dict[str, str] | None) -> None:
    """``task.name`` and ``model.name`` must be the options chosen (``task=mqar task.name=parity`` is refused)."""
    from tasks import task_class
    from xlstm import canonical_name, model_spec

    for group, registry_class in (("task", lambda n: task_class(n).config_class),
                                  ("model", lambda n: model_spec(n).backbone.config_class)):
        name = cfg[group].name
        try:
            expected = registry_class(name)
        except ValueError as err:
            raise SuiteError(f"{group}.name: {err}") from None
        chosen = (choices or {}).get(group)
        if group == "model" and name != canonical_name(name):
            raise SuiteError(f"model.name={name!r}: use the registry key {canonical_name(name)!r}")
        if (chosen is not None and chosen != name) or OmegaConf.get_type(cfg[group]) is not expected:
            option = chosen or f"the {OmegaConf.get_type(cfg[group]).__name__} option"
            raise SuiteError(f"{group}.name={name} does not match {group}={option}: a {group} option sets its own "
                             f"name; choose the {group} with {group}={name} instead of overriding {group}.name")


def validate(cfg: DictConfig) -> None:
    """Values the schema's types allow but a run cannot use, each in one line naming the key."""
    import torch

    if cfg.seed < 0:
        raise SuiteError(f"seed must be >= 0, got {cfg.seed}")
    if cfg.job not in ("train", "speed"):
        raise SuiteError(f"job must be train | speed, got {cfg.job!r}")
    for group in ("trainer", "optim", "logger", "scale", "model", "task", "speed"):
        try:
            OmegaConf.to_object(cfg[group]).check()
        except ValueError as err:
            raise SuiteError(f"{group}.{err}") from None
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SuiteError("trainer.accelerator=gpu but no CUDA device is visible; use trainer=cpu")


def resolve(cfg: DictConfig, explicit: set[str], choices: dict[str, str] | None = None) -> list[str]:
    """Make ``cfg`` the config that runs (in place): checks names and keys, applies the experiment's model settings
    and the task's protocol, validates every value. Returns notes on what the protocol changed."""
    check_unknown_keys(cfg)
    check_choices(cfg, choices)
    apply_task_settings(cfg, explicit)
    apply_model_settings(cfg, explicit)
    apply_model_size(cfg, explicit)
    changed = apply_protocol(cfg)
    validate(cfg)
    return changed


def check_command(overrides: list[str], multirun: bool = False) -> tuple[DictConfig, dict[str, list[str]] | None]:
    """Everything that can be checked before Hydra starts: option names, then the first grid point composed,
    resolved and validated. Returns that point's config (with its ``hydra`` node) and the sweep (None: one run)."""
    check_names(overrides)
    cfg, grid = first_point(overrides, multirun)
    resolve(cfg, explicit_keys(overrides), dict(cfg.hydra.runtime.choices))
    return cfg, grid


def grid_summary(grid: dict[str, list[str]], cfg: DictConfig) -> tuple[int, str]:
    """(number of runs, one line saying what a multirun is about to start)."""
    runs = math.prod(len(v) for v in grid.values()) if grid else 1
    axes = ", ".join(f"{k} x {len(v)}" for k, v in grid.items())
    where = Path(cfg.paths.results_dir) / (cfg.experiment or "adhoc") / cfg.scale.name
    what = "measuring speed" if cfg.job == "speed" else f"{cfg.trainer.max_steps} steps each (first point)"
    return runs, (f"{cfg.experiment or 'ad-hoc'}, scale {cfg.scale.name}: {runs} runs ({axes}), {what}, on "
                  f"{cfg.trainer.accelerator}; records in {where}")


def refuse_paper_scale_on_cpu(cfg: DictConfig, runs: int) -> None:
    if cfg.scale.name == "paper" and cfg.trainer.accelerator == "cpu" and not cfg.scale.allow_cpu:
        raise SuiteError(f"scale=paper is the paper's recipe ({runs} runs of {cfg.trainer.max_steps} steps for the "
                         "first point) and would take weeks on a CPU: add trainer=gpu (or trainer=ddp), or "
                         "scale.allow_cpu=true to start it on the CPU anyway")
