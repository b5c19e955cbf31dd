"""Tasks: data modules with their encoder, decoder and metrics. ``TASKS`` is the one registry."""
from __future__ import annotations

from .base import IGNORE, InfeasibleSetting, SyntheticTask, TaskConfig
from .formal import LANGUAGES, FormalLanguageTask
from .mqar import MQARTask

TASKS: dict[str, type[SyntheticTask]] = {**{name: FormalLanguageTask for name in LANGUAGES}, "mqar": MQARTask}


def task_class(name: str) -> type[SyntheticTask]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(config: TaskConfig) -> SyntheticTask:
    return task_class(config.name)(config)


__all__ = ["IGNORE", "InfeasibleSetting", "TASKS", "TaskConfig", "SyntheticTask", "build_task", "task_class"]
