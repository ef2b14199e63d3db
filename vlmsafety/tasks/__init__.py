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
    from vlmsafety.tasks import report as _report  # noqa: F401
    from vlmsafety.tasks import score as _score  # noqa: F401
    from vlmsafety.tasks import unlearn as _unlearn  # noqa: F401


TASKS: Registry[Task] = Registry("task", _load_builtins)


def register_task(name: str) -> Callable[[Task], Task]:
    return TASKS.register(name)


def get_task(name: str) -> Task:
    return TASKS.get(name)
