"""task=report: (re)write a sweep's summary files and print its table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety.errors import VlmSafetyError
from vlmsafety.report import write_summary
from vlmsafety.tasks import register_task


@register_task("report")
def run_report(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    if not cfg.get("sweep_dir"):
        raise VlmSafetyError("task=report needs sweep_dir=<folder of a sweep>, e.g. sweep_dir=multirun_outputs/DATE/TIME")
    paths = write_summary(Path(cfg.sweep_dir), show=True)
    return {k: str(v) for k, v in paths.items()}
