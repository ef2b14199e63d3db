"""Judge interface and registry: a judge reads stored generations and returns one verdict each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import GenerationRecord


class Judge(ABC):
    """Decides, per response, whether the model complied with (unsafe) or refused the request."""

    # A judge that also sorts responses into classes names them here; its verdicts carry "label".
    labels: ClassVar[tuple[str, ...]] = ()
    # A ground-truth judge: the other judges of a run are scored against it (metrics.judge_vs_reference).
    reference: ClassVar[bool] = False

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def judge(self, records: Sequence[GenerationRecord]) -> list[dict[str, Any]]:
        """One verdict per record: {"unsafe": bool, ...} plus judge-specific fields (score, raw)."""


_JUDGES: dict[str, Callable[..., Judge]] = {}


def register_judge(type_name: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    def wrap(cls: Callable[..., Judge]) -> Callable[..., Judge]:
        _JUDGES[type_name] = cls
        return cls

    return wrap


def build_judge(name: str, cfg: dict[str, Any]) -> Judge:
    """Instantiate the judge configured as `judge.<name>` (its `type` picks the class)."""
    import vlmsafety.judges  # noqa: F401  (registers the shipped judges)

    cfg = dict(cfg)
    type_name = cfg.pop("type", name)
    if type_name not in _JUDGES:
        raise VlmSafetyError(f"judge.{name}: unknown judge type {type_name!r}; known: {', '.join(sorted(_JUDGES))}")
    return _JUDGES[type_name](name=name, **cfg)
