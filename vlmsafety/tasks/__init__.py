"""Tasks a job can run (`task=...`), one module each, registered by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety.registry import Registry

Task = Callable[[DictConfig, Path], Any]


# The shipped tasks, each in its own module. A job imports only its task's module: `task=report` never
# loads torch, whose import is most of a run's start-up (docs/PERFORMANCE.md).
BUILTIN_TASKS = {
    name: f"vlmsafety.tasks.{name}" for name in ("eval", "inspect", "probe", "report", "score", "unlearn")
}


def _load_builtins() -> None:
    for module in BUILTIN_TASKS.values():
        importlib.import_module(module)


TASKS: Registry[Task] = Registry("task", _load_builtins)


def register_task(name: str, job_record: bool = False, outputs: tuple[str, ...] | None = None) -> Callable[[Task], Task]:
    """Register a task; `job_record`: its output folder is a job of a sweep (metrics.json with a status),
    so a failure is recorded there too; `outputs`: the files and folders a job writes there (default: an eval
    job's), moved aside rather than overwritten when another job fails in that folder (`jobs.mark_failed`)."""
    def wrap(fn: Task) -> Task:
        fn.job_record = job_record  # type: ignore[attr-defined]
        fn.outputs = outputs  # type: ignore[attr-defined]
        return TASKS.register(name)(fn)

    return wrap


def writes_job_record(task: Task) -> bool:
    return bool(getattr(task, "job_record", False))


def job_outputs(task: Task) -> tuple[str, ...] | None:
    """The files and folders a job of `task` writes into its folder; None: an eval job's."""
    return getattr(task, "outputs", None)


def get_task(name: str) -> Task:
    if name in BUILTIN_TASKS:
        importlib.import_module(BUILTIN_TASKS[name])  # registers it; the other tasks stay unimported
        return TASKS.get_registered(name)
    return TASKS.get(name)
