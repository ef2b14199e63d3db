"""Toxicity-scorer interface and registry (Perspective, Detoxify and offline scorers plug in here)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from vlmsafety.registry import Registry


class ToxicityScorer(ABC):
    """Scores texts on one or more attributes in [0, 1]; None marks an item that could not be scored."""

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def score(self, texts: Sequence[str]) -> list[dict[str, float | None]]:
        """One {attribute: score or None} dict per text."""


def _load_builtins() -> None:
    import vlmsafety.toxicity  # noqa: F401  (registers the shipped scorers)


SCORERS: Registry[Callable[..., ToxicityScorer]] = Registry("toxicity scorer type", _load_builtins)


def register_scorer(type_name: str) -> Callable[[Callable[..., ToxicityScorer]], Callable[..., ToxicityScorer]]:
    return SCORERS.register(type_name)


def build_scorer(name: str, cfg: dict[str, Any]) -> ToxicityScorer:
    """Instantiate the scorer configured as `toxicity.<name>` (its `type` picks the class)."""
    cfg = dict(cfg)
    type_name = cfg.pop("type", name)
    return SCORERS.get(type_name, where=f"toxicity.{name}")(name=name, **cfg)
