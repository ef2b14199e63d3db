"""Built-in models: tiny VLMs (and judge stand-ins) built locally from configs, or shipped trained with the package.

A built-in model is loaded with exactly the `from_pretrained(path)` code that serves a hub id or
a local checkpoint; building only decides what sits in the folder. Built models are cached under
`$VLMSAFETY_CACHE` (default `~/.cache/vlmsafety`), one folder per (name, build version); shipped
models (`register_shipped`) are `save_pretrained` folders inside the package, used as they are.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from vlmsafety.errors import VlmSafetyError

log = logging.getLogger(__name__)

Builder = Callable[[Path], None]  # writes model + processor into the given folder
_BUILDERS: dict[str, tuple[str, Builder]] = {}
_SHIPPED: dict[str, tuple[Path, str]] = {}  # name -> (folder, how to recreate it)


def register_builtin(name: str, version: str) -> Callable[[Builder], Builder]:
    """Register a builder; bump `version` whenever the built weights or files would change."""

    def wrap(fn: Builder) -> Builder:
        _BUILDERS[name] = (version, fn)
        return fn

    return wrap


def register_shipped(name: str, folder: Path, recreate: str) -> None:
    """Register a model that ships as a `save_pretrained` folder; `recreate` says how to rebuild it."""
    _SHIPPED[name] = (folder, recreate)


def builtin_names() -> list[str]:
    _register_all()
    return sorted([*_BUILDERS, *_SHIPPED])


def cache_root() -> Path:
    return Path(os.environ.get("VLMSAFETY_CACHE") or Path.home() / ".cache" / "vlmsafety")


def ensure_builtin(name: str) -> Path:
    """Return the folder of built-in model `name`, building it first if it is not cached."""
    _register_all()
    if name in _SHIPPED:
        folder, recreate = _SHIPPED[name]
        if not (folder / "config.json").exists():
            raise VlmSafetyError(f"built-in model {name!r} should ship at {folder} but is missing; {recreate}")
        return folder
    if name not in _BUILDERS:
        raise VlmSafetyError(f"unknown built-in model {name!r}; built-in models: {', '.join(builtin_names())}")
    version, build = _BUILDERS[name]
    target = cache_root() / "models" / f"{name}-{version}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        log.info("building built-in model %s into %s", name, target)
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same build first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _register_all() -> None:
    from vlmsafety.models.builtin import (  # noqa: F401
        organism,
        tiny_judges,
        tiny_llava,
        tiny_llava_next,
        tiny_mllama,
        tiny_qwen2_vl,
    )
