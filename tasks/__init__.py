"""Tasks: data modules that know their head, metrics and protocol (``tasks.base.Task``). ``TASKS`` is the one
registry, keyed by the names of the Hydra options under configs/task/."""
from __future__ import annotations

from pathlib import Path

from .base import IGNORE, InfeasibleSetting, SyntheticTask, Task, TaskConfig
from .formal import LANGUAGES, FormalLanguageTask
from .heads import Scored
from .lm.task import LanguageModellingTask, SlimPajamaTask
from .lra import LRA_TASKS
from .mqar import MQARTask

TASKS: dict[str, type[Task]] = {**{name: FormalLanguageTask for name in LANGUAGES}, "mqar": MQARTask,
                                **LRA_TASKS, "slimpajama": SlimPajamaTask,
                                "lm_local": LanguageModellingTask}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(config: TaskConfig, data_dir: str | Path = "data") -> Task:
    return task_class(config.name)(config, data_dir)


__all__ = ["IGNORE", "InfeasibleSetting", "Scored", "SyntheticTask", "TASKS", "Task", "TaskConfig", "build_task",
           "task_class"]
