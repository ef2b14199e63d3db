"""Process-wide bounds on what a run may build from its inputs (set from the config by the runner).

An image is bounded before its pixels are allocated or decoded: `attack.image=blank
attack.image_size=100000` would otherwise ask for 30 GB and have the kernel kill the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmsafety.errors import VlmSafetyError


@dataclass
class ImageLimits:
    max_side: int = 8192  # pixels, width or height
    max_pixels: int = 40_000_000  # width x height (an 8-bit RGB image of this size is 120 MB)

    def problem(self, width: int, height: int) -> str | None:
        """Why a width x height image is too large (None: it is not)."""
        if max(width, height) > self.max_side:
            return f"{width}x{height} pixels is too large: a side may be at most image_limits.max_side={self.max_side}"
        if width * height > self.max_pixels:
            return f"{width}x{height} pixels is too large: at most image_limits.max_pixels={self.max_pixels} pixels"
        return None

    def check(self, width: int, height: int, what: str) -> None:
        if (why := self.problem(width, height)) is not None:
            raise VlmSafetyError(f"{what}: {why}; make it smaller (or raise the limit)")


IMAGES = ImageLimits()


def configure(cfg: Any) -> None:
    """Take `image_limits.max_side` / `max_pixels` from the job's config (defaults when absent)."""
    node = cfg.get("image_limits") if hasattr(cfg, "get") else None
    IMAGES.max_side = int((node or {}).get("max_side") or ImageLimits.max_side)
    IMAGES.max_pixels = int((node or {}).get("max_pixels") or ImageLimits.max_pixels)
