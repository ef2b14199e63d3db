"""Toxicity-scorer interface and registry (Perspective, Detoxify and offline scorers plug in here)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from vlmsafety.errors import check_options
from vlmsafety.registry import Registry

# Keys a scorer may store beside its attribute scores: `truncated` (True when the text was cut
# before scoring) and `error` (why an item is unscored). Everything else in a scorer's dict is an attribute.
FLAGS = ("truncated", "error")


class ToxicityScorer(ABC):
    """Scores texts on one or more attributes in [0, 1]; None marks an item that could not be scored."""

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def score(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One {attribute: score or None} dict per text (plus any of FLAGS)."""


def _load_builtins() -> None:
    import vlmsafety.toxicity  # noqa: F401  (registers the shipped scorers)


SCORERS: Registry[Callable[..., ToxicityScorer]] = Registry("toxicity scorer type", _load_builtins)


def register_scorer(type_name: str) -> Callable[[Callable[..., ToxicityScorer]], Callable[..., ToxicityScorer]]:
    return SCORERS.register(type_name)


def build_scorer(name: str, cfg: dict[str, Any]) -> ToxicityScorer:
    """Instantiate the scorer configured as `toxicity.<name>` (its `type` picks the class)."""
    cfg = dict(cfg)
    type_name = cfg.pop("type", name)
    cls = SCORERS.get(type_name, where=f"toxicity.{name}")
    check_options(f"toxicity.{name}", cls, cfg)
    return cls(name=name, **cfg)
