"""Which job folders of a sweep folder belong to the sweep run last there (docs/sweeps.md).

A sweep folder can hold more than one run: rerunning into it with fewer jobs leaves the earlier
run's extra job folders behind, and a summary that mixed them (n=8 beside n=255) would publish a
wrong table. Hydra writes `multirun.yaml` into the sweep folder when a multirun starts and each
job's `.hydra/config.yaml` when that job starts, so a job of the last run has a snapshot at least
as new as `multirun.yaml`. A job whose metrics.json carries another job key than the one its own
snapshot gives was written by another config (and did not get to rewrite it): also left out.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

MULTIRUN_YAML = "multirun.yaml"
SNAPSHOT = Path(".hydra") / "config.yaml"


def split_by_last_run(sweep_dir: Path, found: list[Path]) -> tuple[list[Path], list[Path]]:
    """(jobs of the last run, other job folders) among `found`, the job folders under `sweep_dir`.

    Without `multirun.yaml` (a `layers=[...]` run's own folder, hand-made folders) every job counts."""
    marker = sweep_dir / MULTIRUN_YAML
    if not marker.is_file():
        return list(found), []
    started = marker.stat().st_mtime_ns
    jobs, others = [], []
    for job in found:
        snapshot = _snapshot_of(job, sweep_dir)
        if snapshot is not None and (snapshot.stat().st_mtime_ns < started or _other_key(job, snapshot)):
            others.append(job)
        else:
            jobs.append(job)
    return jobs, others


def _snapshot_of(job: Path, sweep_dir: Path) -> Path | None:
    """The Hydra snapshot of the job that wrote `job`: its own, or its parent's (a `layers=[...]` job)."""
    for folder in (job, *job.parents):
        if (folder / SNAPSHOT).is_file():
            return folder / SNAPSHOT
        if folder == sweep_dir:
            break
    return None


def _other_key(job: Path, snapshot: Path) -> bool:
    """Whether `job`'s metrics.json was written by another config than its own snapshot's."""
    if snapshot.parent.parent != job:
        return False  # a `layers=[...]` sub-job is keyed by its layer, not by the parent's snapshot
    from omegaconf import OmegaConf

    from vlmsafety.jobs import job_key
    from vlmsafety.records import METRICS, read_metrics_file

    try:
        recorded = read_metrics_file(job / METRICS).get("job_key")
        expected = job_key(OmegaConf.load(snapshot)) if recorded else None
    except Exception as e:  # noqa: BLE001 — a snapshot that no longer resolves cannot say
        log.debug("cannot compare the job key of %s: %s", job, e)
        return False
    return bool(recorded and expected and recorded != expected)
