"""Tasks a job can run (`task=...`), one module each, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety.registry import Registry

Task = Callable[[DictConfig, Path], Any]


def _load_builtins() -> None:
    from vlmsafety.tasks import eval as _eval  # noqa: F401
    from vlmsafety.tasks import inspect as _inspect  # noqa: F401
    from vlmsafety.tasks import probe as _probe  # noqa: F401
    from vlmsafety.tasks import report as _report  # noqa: F401
    from vlmsafety.tasks import score as _score  # noqa: F401
    from vlmsafety.tasks import unlearn as _unlearn  # noqa: F401


TASKS: Registry[Task] = Registry("task", _load_builtins)


def register_task(name: str, job_record: bool = False) -> Callable[[Task], Task]:
    """Register a task; `job_record`: its output folder is a job of a sweep (metrics.json with a status),
    so a failure is recorded there too."""
    def wrap(fn: Task) -> Task:
        fn.job_record = job_record  # type: ignore[attr-defined]
        return TASKS.register(name)(fn)

    return wrap


def writes_job_record(task: Task) -> bool:
    return bool(getattr(task, "job_record", False))


def get_task(name: str) -> Task:
    return TASKS.get(name)
