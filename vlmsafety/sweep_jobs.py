"""Which job folders of a sweep folder belong to the sweep run last there (docs/sweeps.md).

A sweep folder can hold more than one run: rerunning into it with fewer jobs leaves the earlier
run's extra job folders behind, and a summary that mixed them (n=8 beside n=255) would publish a
wrong table. Hydra writes `multirun.yaml` into the sweep folder when a multirun starts and each
job's `.hydra/config.yaml` when that job starts, so a job of the last run has a snapshot at least
as new as `multirun.yaml`.

Not by recomputing each job's key from its snapshot: the snapshot keeps `${oc.env:...}`
interpolations, so a report run in another environment (or a SLURM node's) would compute other
keys and leave out good jobs. A job of the last run that met another config's records in its
folder moved them aside before running (jobs.set_aside), so its metrics are its own.
"""

from __future__ import annotations

from pathlib import Path

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
        if snapshot is not None and snapshot.stat().st_mtime_ns < started:
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
