"""Tasks a job can run (`task=...`), one module each, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety.errors import VlmSafetyError

Task = Callable[[DictConfig, Path], Any]
_TASKS: dict[str, Task] = {}


def register_task(name: str) -> Callable[[Task], Task]:
    def wrap(fn: Task) -> Task:
        _TASKS[name] = fn
        return fn

    return wrap


def get_task(name: str) -> Task:
    from vlmsafety.tasks import eval as _eval  # noqa: F401
    from vlmsafety.tasks import inspect as _inspect  # noqa: F401
    from vlmsafety.tasks import report as _report  # noqa: F401

    if name not in _TASKS:
        raise VlmSafetyError(f"unknown task={name!r}; valid tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]
