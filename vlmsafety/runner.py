"""The runner: takes the composed config of one job and runs its task (DESIGN.md §1)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety.errors import VlmSafetyError
from vlmsafety.tasks import get_task
from vlmsafety.ui import print_error

log = logging.getLogger("vlmsafety")


def job_dir(cfg: DictConfig) -> Path:
    """The folder this job writes into: Hydra's output dir, or `output_dir` outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    raise VlmSafetyError("no output folder: run through run.py (Hydra) or set output_dir")


def run(cfg: DictConfig) -> Any:
    """Run `cfg.task`; a VlmSafetyError becomes one log line and exit status 2 (unless debug=true)."""
    try:
        out_dir = job_dir(cfg)
        out_dir.mkdir(parents=True, exist_ok=True)
        return get_task(str(cfg.task))(cfg, out_dir)
    except VlmSafetyError as e:
        if cfg.get("debug"):
            raise
        print_error(str(e))
        log.error("%s", e, extra={"printed": True})  # the job's log file keeps it too
        sys.exit(2)
