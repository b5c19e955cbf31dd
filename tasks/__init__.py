"""Tasks: data modules with their encoder, decoder and metrics. ``TASKS`` is the one registry."""
from __future__ import annotations

from .base import IGNORE, SyntheticTask, TaskConfig
from .formal import LANGUAGES, FormalLanguageTask

TASKS: dict[str, type[SyntheticTask]] = {name: FormalLanguageTask for name in LANGUAGES}


def task_class(name: str) -> type[SyntheticTask]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(config: TaskConfig) -> SyntheticTask:
    return task_class(config.name)(config)


__all__ = ["IGNORE", "TASKS", "TaskConfig", "SyntheticTask", "build_task", "task_class"]
