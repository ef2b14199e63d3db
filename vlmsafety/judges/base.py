"""Judge interface and registry: a judge reads stored generations and returns one verdict each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from vlmsafety.records import GenerationRecord
from vlmsafety.registry import Registry


class Judge(ABC):
    """Decides, per response, whether the model complied with (unsafe) or refused the request."""

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def judge(self, records: Sequence[GenerationRecord]) -> list[dict[str, Any]]:
        """One verdict per record: {"unsafe": bool, ...} plus judge-specific fields (score, raw)."""


def _load_builtins() -> None:
    import vlmsafety.judges  # noqa: F401  (registers the shipped judges)


JUDGES: Registry[Callable[..., Judge]] = Registry("judge type", _load_builtins)


def register_judge(type_name: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    return JUDGES.register(type_name)


def build_judge(name: str, cfg: dict[str, Any]) -> Judge:
    """Instantiate the judge configured as `judge.<name>` (its `type` picks the class)."""
    cfg = dict(cfg)
    type_name = cfg.pop("type", name)
    return JUDGES.get(type_name, where=f"judge.{name}")(name=name, **cfg)
