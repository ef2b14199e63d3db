"""The one exception type the CLI turns into a single actionable line, and checks that raise it."""

from __future__ import annotations

import inspect
from typing import Any


class VlmSafetyError(Exception):
    """A user-facing error: what was wrong, where, and what would be valid — in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def check_options(where: str, cls: Any, cfg: dict[str, Any]) -> None:
    """One clear line for a config key the component's constructor does not take.

    Follows `**kwargs` up the class hierarchy (a subclass passing its extra options to its parent).
    """
    params: list[str] = []
    for klass in getattr(cls, "__mro__", (cls,)):
        init = klass.__dict__.get("__init__") if isinstance(klass, type) else klass
        if init is None:
            continue
        sig = inspect.signature(init)
        params += [p.name for p in sig.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    valid = [p for p in dict.fromkeys(params) if p not in ("self", "name")]
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        hint = " (API keys come from environment variables only, never from configs)" if any(
            "key" in k.lower() for k in unknown
        ) else ""
        raise VlmSafetyError(f"{where}: unknown option {unknown[0]!r}{hint}; valid options: {', '.join(valid)}")
