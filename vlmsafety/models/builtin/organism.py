"""organism: the project's own safety-tuned tiny VLM, trained by `make organism` and shipped in the package."""

from __future__ import annotations

from pathlib import Path

from vlmsafety.models.builtin import register_shipped

CHECKPOINT = Path(__file__).resolve().parents[2] / "organism" / "checkpoint"  # vlmsafety/organism/checkpoint

register_shipped(
    "organism", CHECKPOINT / "model",
    recreate="restore it (git checkout vlmsafety/organism/checkpoint) or retrain it with `make organism`",
)
