"""The runner: takes the composed config of one job and runs its task (DESIGN.md §1).

Failures (docs/sweeps.md): a job that writes a job record (task=eval) records `status: failed`
in its metrics.json. In a sweep (`-m`) the failure is logged and the sweep goes on, unless
`fail_fast=true`; a single run prints one line and exits with status 2.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety import jobs, limits
from vlmsafety.errors import VlmSafetyError
from vlmsafety.faults import as_user_error
from vlmsafety.tasks import get_task, job_outputs, writes_job_record
from vlmsafety.ui import print_error
from vlmsafety.validate import check_values

log = logging.getLogger("vlmsafety")

# conf/hydra/launcher/submitit_*.yaml set our defaults on the submitit plugin's presets of the same
# name; Hydra validates them against the plugin's schema (good) and warns that this matching is
# deprecated. Filtered here, not in run.py, because submitit's job processes import this module too.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema")


def job_dir(cfg: DictConfig) -> Path:
    """The folder this job writes into: Hydra's output dir, or `output_dir` outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    raise VlmSafetyError("no output folder: run through run.py (Hydra) or set output_dir")


def run(cfg: DictConfig) -> Any:
    """Run `cfg.task`; a failure is recorded, then isolated (sweep) or reported (single run)."""
    out_dir = task = None
    try:
        out_dir = job_dir(cfg)
        out_dir.mkdir(parents=True, exist_ok=True)
        task = get_task(str(cfg.task))
        check_values(cfg)  # a sweep's own values (layer=0,1.5) too: the callback saw the config before the sweep
        limits.configure(cfg)
        return task(cfg, out_dir)
    except Exception as e:
        e = as_user_error(e) or e  # a full disk or a blocked path is one line, not a traceback
        line = jobs.error_line(e)
        # a `layers=[...]` job's layers recorded their own failures; its folder is not a job record
        if out_dir is not None and task is not None and writes_job_record(task) and not isinstance(e, jobs.JobsFailed):
            try:
                jobs.mark_failed(out_dir, cfg, e, job_outputs(task) or jobs.EVAL_OUTPUTS)
            except OSError as write_error:
                log.warning("could not record the failure in %s: %s", out_dir, write_error)
        if cfg.get("debug"):
            raise
        isolate = jobs.in_sweep() and not cfg.get("fail_fast")
        if not isolate and not isinstance(e, VlmSafetyError):
            raise  # an unexpected error outside a sweep keeps its traceback
        print_error(line)
        # the job's log file keeps the line (and the traceback of an unexpected error); the console has it already
        log.error("%s", line, exc_info=not isinstance(e, VlmSafetyError), extra={"printed": True})
        if not isolate:
            sys.exit(2)
        log.warning("job failed (recorded in %s); the sweep goes on (fail_fast=true stops at the first failure)", out_dir)
        return {"status": jobs.FAILED, "error": line}
