"""The attack item every loader yields, and the registry that maps `attack.loader` to a loader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig

from vlmsafety.errors import VlmSafetyError
from vlmsafety.registry import Registry


@dataclass(frozen=True)
class ImageSpec:
    """How to obtain an item's image: a file on disk or a recipe the project renders.

    kind: "file" (params: path) or a synthesis recipe registered in `vlmsafety.attacks.images`
    ("blank", "solid", "noise", "picture", "figstep", ...). Params must be JSON-serialisable:
    the spec is written verbatim into `generations.jsonl`.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "kind" in self.params:
            # to_dict() writes params beside "kind": a param of that name would overwrite it.
            raise VlmSafetyError(f"image spec {self.kind!r}: 'kind' is reserved and cannot be a param name")

    def to_dict(self) -> dict[str, Any]:
        """The flat form written into records: {"kind": ..., **params}."""
        return {"kind": self.kind, **self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageSpec:
        """Inverse of `to_dict`."""
        if "kind" not in d:
            raise VlmSafetyError(f"image spec {d!r} has no 'kind'; expected e.g. {{'kind': 'file', 'path': ...}}")
        return cls(str(d["kind"]), {k: v for k, v in d.items() if k != "kind"})


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


@dataclass
class AttackSet:
    """What a loader returns: the items, how many bad rows it skipped, and where the rows came from."""

    items: list[AttackItem]
    skipped: int = 0  # rows dropped under attack.on_bad_row=skip
    source: str = ""  # file(s) or hub id the rows were read from
    too_long: int = 0  # prompts dropped as too long for the model's context (counted in `skipped` too)
    neutralised: int = 0  # prompts whose markup-like text (`<image>`) was neutralised (prompt_fit.py)


Loader = Callable[[DictConfig], AttackSet]


def _load_builtins() -> None:
    import vlmsafety.attacks  # noqa: F401  (registers the shipped loaders)


LOADERS: Registry[Loader] = Registry("attack loader", _load_builtins)


def register_attack(name: str) -> Callable[[Loader], Loader]:
    """Register a loader under the name that `attack.loader` uses to select it."""
    return LOADERS.register(name)


def get_loader(name: str) -> Loader:
    return LOADERS.get(name, where="attack.loader")
