"""The attack item every loader yields, and the registry that maps `attack.loader` to a loader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig

from vlmsafety.errors import VlmSafetyError


@dataclass(frozen=True)
class ImageSpec:
    """How to obtain an item's image: a file on disk or a recipe the project renders.

    kind: "file" (params: path) or a synthesis recipe registered in `vlmsafety.attacks.images`
    ("blank", "solid", "noise", "picture", "figstep", ...). Params must be JSON-serialisable:
    the spec is written verbatim into `generations.jsonl`.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageSpec:
        """The inverse of `to_dict` (a spec as stored in `generations.jsonl`)."""
        d = dict(d)
        return cls(kind=d.pop("kind"), params=d)


@dataclass
class AttackItem:
    """One prompt of an attack set, with or without an image."""

    id: str
    source: str  # dataset the item comes from, e.g. "builtin", "advbench"
    category: str
    harmful: bool
    text: str  # the user's text turn as sent to the model (before the chat template)
    image: ImageSpec | None = None
    behavior: str | None = None  # the request being tested, for judges; defaults to `text`
    target: str | None = None
    context: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.behavior is None:
            self.behavior = self.text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image"] = self.image.to_dict() if self.image else None
        return d


Loader = Callable[[DictConfig], list[AttackItem]]
_LOADERS: dict[str, Loader] = {}


def register_attack(name: str) -> Callable[[Loader], Loader]:
    """Register a loader under the name that `attack.loader` uses to select it."""

    def wrap(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn

    return wrap


def get_loader(name: str) -> Loader:
    import vlmsafety.attacks  # noqa: F401  (registers the built-in loaders)

    if name not in _LOADERS:
        raise VlmSafetyError(f"unknown attack loader {name!r}; registered loaders: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]
