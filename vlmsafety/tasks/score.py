"""task=score: re-judge stored generations with the configured judges and toxicity scorers.

`python run.py task=score run_dir=<job or sweep folder> judge=[keyword,llamaguard3]` reads every
`generations.jsonl` under `run_dir`, applies the configured judges and scorers, rewrites the file
(atomically) with their verdicts merged in, updates each `metrics.json` and the sweep summary.
It generates nothing and never loads the VLM.

Merging: a judge or scorer that runs now replaces its own earlier entry (same name); entries of
judges and scorers that do not run now are kept, so adding a judge never loses another's verdicts,
and the metrics cover every judge present in all records (a record-level `degenerate` flag and
every verdict's outcome are recomputed). To drop a judge, re-run eval or edit the records.

Every job is read and checked before anything is written (records.read_records): a torn or
duplicated record, a record without a field, an unreadable metrics.json, or fewer records than
the metrics count stops the whole command with one line naming the file, and no job is rewritten.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmsafety import environment
from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import (
    GENERATIONS,
    METRICS,
    GenerationRecord,
    RecordError,
    read_metrics_file,
    read_records,
    write_json_atomic,
    write_jsonl_atomic,
)
from vlmsafety.report import SUMMARY_CSV, natural_key, superseded, write_summary
from vlmsafety.scoring import apply_judges, apply_scorers, covering, judged_names, judging_metrics
from vlmsafety.tasks import register_task
from vlmsafety.ui import progress
from vlmsafety.worker import get_worker

log = logging.getLogger(__name__)


def find_generation_dirs(run_dir: Path) -> list[Path]:
    """Job folders under `run_dir` (itself included): every folder holding a generations.jsonl."""
    found = {p.parent for p in run_dir.rglob(GENERATIONS) if not superseded(p.parent, run_dir)}
    return sorted(found, key=natural_key)


def load_job(job: Path) -> tuple[list[GenerationRecord], dict[str, Any] | None]:
    """A job's checked records and metrics (None: no metrics.json); RecordError when they disagree."""
    metrics = read_metrics_file(job / METRICS) if (job / METRICS).exists() else None
    if metrics is not None and metrics.get("status") != "complete":
        return [], metrics
    records = read_records(job / GENERATIONS)
    n = (metrics or {}).get("n")
    if isinstance(n, int) and n != len(records):
        raise RecordError(
            f"{job / GENERATIONS} has {len(records)} records but {job / METRICS} says n={n}: the records are "
            "incomplete or were edited; rerun the job's eval (same command: it resumes) before scoring"
        )
    return records, metrics


@register_task("score")
def run_score(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    if not cfg.get("run_dir"):
        raise VlmSafetyError("task=score needs run_dir=<job or sweep folder>, e.g. run_dir=multirun_outputs/DATE/TIME")
    run_dir = Path(cfg.run_dir)
    if not run_dir.is_dir():
        raise VlmSafetyError(f"run_dir {run_dir} does not exist; pass the folder of a job or of a sweep")
    loaded = {job: load_job(job) for job in find_generation_dirs(run_dir)}  # every job checked before any write
    jobs = []
    for job, (_, metrics) in loaded.items():
        if metrics is not None and metrics.get("status") != "complete":
            # a killed job's file holds only its first batches; resuming the sweep finishes it
            log.warning("skipping %s: its eval did not complete (rerun the sweep to resume it, then score)", job)
        else:
            jobs.append(job)
    if not jobs:
        raise VlmSafetyError(f"no {GENERATIONS} under {run_dir} from a complete eval job; is this the folder of a finished job or sweep?")
    worker = get_worker()
    judges = worker.judges(cfg.get("judge"))
    scorers = worker.scorers(cfg.get("toxicity"))
    if not judges and not scorers:
        raise VlmSafetyError("task=score with no judge and no toxicity scorer: set judge=[...] and/or toxicity=[...]")
    log.info(
        "re-scoring %d job(s) under %s with judges [%s] and toxicity [%s]", len(jobs), run_dir,
        ", ".join(j.name for j in judges), ", ".join(s.name for s in scorers),
    )
    with progress() as bar:
        task = bar.add_task("re-scoring jobs", total=len(jobs))
        for job in jobs:
            rescore_job(job, judges, scorers, *loaded[job])
            bar.advance(task)
    summary_dir = _sweep_of(run_dir, jobs)
    out: dict[str, Any] = {"jobs": [str(j) for j in jobs]}
    if summary_dir is not None:
        out["summary"] = {k: str(v) for k, v in write_summary(summary_dir, show=True).items()}
    return out


def rescore_job(
    job: Path, judges: list, scorers: list, records: list[GenerationRecord], metrics: dict[str, Any] | None
) -> dict[str, Any]:
    """Judge and score one job's stored (checked) generations; rewrite generations.jsonl and metrics.json."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    judges = covering(judges, records)
    apply_judges(records, judges)
    timings["judge"] = time.perf_counter() - t
    t = time.perf_counter()
    apply_scorers(records, scorers)
    timings["toxicity"] = time.perf_counter() - t
    write_jsonl_atomic(job / GENERATIONS, records)

    metrics_path = job / METRICS
    metrics = dict(metrics) if metrics is not None else {"status": "complete", "n": len(records)}
    judge_names, scorer_names = judged_names(records)
    metrics.update(judging_metrics(records, judge_names, scorer_names, judges))
    metrics["rescored"] = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "judges": [j.name for j in judges],
        "toxicity": [s.name for s in scorers],
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "git_commit": environment.git_commit(),
    }
    write_json_atomic(metrics_path, metrics)
    asr = ", ".join(
        f"{j} {v['value']:.2f}" for j, v in metrics["asr"].items() if v.get("value") is not None
    )
    log.info("%s: ASR %s", job, asr or "—")
    return metrics


def _sweep_of(run_dir: Path, jobs: list[Path]) -> Path | None:
    """The folder whose summary to rewrite: run_dir for a sweep, the enclosing sweep of a single job."""
    if jobs != [run_dir]:
        return run_dir
    parent = run_dir.parent
    return parent if (parent / SUMMARY_CSV).exists() else None
