"""The one exception type the CLI turns into a single actionable line, and checks that raise it."""

from __future__ import annotations

import inspect
from typing import Any


class VlmSafetyError(Exception):
    """A user-facing error: what was wrong, where, and what would be valid — in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def check_options(where: str, cls: Any, cfg: dict[str, Any]) -> None:
    """One clear line for a config key the component's constructor does not take."""
    params = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(cfg) - set(params))
    if unknown:
        hint = " (API keys come from environment variables only, never from configs)" if any(
            "key" in k.lower() for k in unknown
        ) else ""
        raise VlmSafetyError(
            f"{where}: unknown option {unknown[0]!r}{hint}; valid options: {', '.join(p for p in params if p != 'name')}"
        )
