"""A small name → object registry, shared by every pluggable component (families, loaders, judges, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vlmsafety.errors import VlmSafetyError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to components; `register` is a decorator, `get` fails with one line listing valid names."""

    def __init__(self, kind: str, load_builtins: Callable[[], object] | None = None):
        self.kind = kind  # e.g. "attack loader", used in error messages
        self._items: dict[str, T] = {}
        self._load_builtins = load_builtins  # imports the modules that register the shipped components

    def register(self, name: str) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            self._items[name] = obj
            return obj

        return wrap

    def get(self, name: str, where: str = "") -> T:
        self._ensure_loaded()
        if name not in self._items:
            prefix = f"{where}: " if where else ""
            raise VlmSafetyError(f"{prefix}unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def get_registered(self, name: str) -> T:
        """`name` if it is registered already, without importing the other built-in components."""
        return self._items[name] if name in self._items else self.get(name)

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _ensure_loaded(self) -> None:
        if self._load_builtins is not None:
            load, self._load_builtins = self._load_builtins, None
            load()
