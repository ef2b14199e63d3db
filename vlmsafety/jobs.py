"""Job bookkeeping that lets a sweep survive a kill or a bad job (docs/sweeps.md).

- A job's **key** hashes its resolved config without output paths, run controls and secrets: the
  same job rerun (after a kill, or in a resumed sweep) gets the same key; any change that can
  change its records (model, layer, attack, limit, max_new_tokens, batch_size, judges, ...) does not.
- Its **status** lives in `metrics.json`: `running` (written when the job starts), `complete`
  (with every metric) or `failed` (with the one-line error and the exception type).
- A partly written job keeps the whole batches already appended to `generations.jsonl`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vlmsafety import environment
from vlmsafety.cli import is_secret_key
from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import (
    GENERATIONS,
    METRICS,
    SUPERSEDED,
    GenerationRecord,
    parse_record,
    read_metrics_file,
    write_json_atomic,
    write_jsonl_atomic,
)

log = logging.getLogger(__name__)

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
# what an eval job writes into its folder (task=unlearn lists its own: tasks/unlearn.py UNLEARN_OUTPUTS)
EVAL_OUTPUTS = (GENERATIONS, METRICS)

# Top-level keys that never change a job's records: run controls, output and input folders of other
# tasks, cache tuning, image limits (they only refuse inputs), `probe` (task=probe's settings: they
# change no eval record), `layer_batching` (which layers share generate calls: docs/PERFORMANCE.md), and
# `layers` (each layer of a `layers=[...]` job is keyed as a `layer=L` job).
NON_RESULT_KEYS = frozenset(
    {"resume", "fail_fast", "debug", "sweep_dir", "run_dir", "output_dir", "feature_cache", "layers", "probe",
     "image_limits", "layer_batching"}
)


class JobsFailed(VlmSafetyError):
    """Some jobs run inside one Hydra job (`layers=[...]`) failed; each has recorded its own failure."""


SWEEP_END: dict[str, int] = {}  # what the sweep summary found when this process's multirun ended


def record_sweep_end(incomplete_jobs: int) -> None:
    """Called by the sweep summary callback: how many jobs of the sweep did not complete."""
    SWEEP_END["incomplete"] = incomplete_jobs


def sweep_exit_status() -> int:
    """1 when the sweep this process just ran has jobs that did not complete, else 0."""
    return 1 if SWEEP_END.get("incomplete", 0) else 0


def in_sweep() -> bool:
    """Whether this job is one of a Hydra multirun (`-m`), in this process or a launcher's."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_key(cfg: DictConfig) -> str:
    """16 hex digits: sha256 of the resolved config minus NON_RESULT_KEYS and secret-named keys."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain = {k: v for k, v in plain.items() if k not in NON_RESULT_KEYS}
    blob = json.dumps(_without_secrets(plain), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _without_secrets(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_secrets(v) for k, v in node.items() if not is_secret_key(str(k))}
    if isinstance(node, list):
        return [_without_secrets(v) for v in node]
    return node


# --- status in metrics.json ------------------------------------------------------------------------
def read_metrics(job_dir: Path) -> dict[str, Any] | None:
    """The job's metrics.json, or None when there is none (or it cannot be read)."""
    path = job_dir / METRICS
    if not path.exists():
        return None
    try:
        return read_metrics_file(path)
    except VlmSafetyError as e:
        log.warning("%s; the job will run again", e)
        return None


def completed(job_dir: Path, key: str) -> dict[str, Any] | None:
    """The job's metrics when it is complete with this key (so it need not run again), else None."""
    m = read_metrics(job_dir)
    return m if m and m.get("status") == COMPLETE and m.get("job_key") == key else None


def job_header(cfg: DictConfig) -> dict[str, Any]:
    """What identifies a job in a summary row, readable even when the job failed early."""
    def name(group: str) -> Any:
        node = cfg.get(group)
        return node.get("name") if isinstance(node, DictConfig) else node

    return {
        "task": cfg.get("task"),
        "model": name("model"),
        "family": (cfg.get("model") or {}).get("family"),
        "attack": name("attack"),
        "unlearn": name("unlearn") or "none",
        "layer_requested": cfg.get("layer"),
        "seed": cfg.get("seed"),
    }


def mark_running(job_dir: Path, cfg: DictConfig, key: str) -> None:
    """metrics.json says `running` from the job's start: a kill leaves that, never a stale `complete`."""
    write_json_atomic(job_dir / METRICS, {"status": RUNNING, "job_key": key, **job_header(cfg), "started_at": now()})


def mark_failed(job_dir: Path, cfg: DictConfig, exc: BaseException, outputs: Sequence[str] = EVAL_OUTPUTS) -> str:
    """Write `status: failed` with the one-line error into metrics.json; return that line.

    Records found there that are not this job's own unfinished ones (another config's, or any complete job's:
    a job can fail before its first step, e.g. on a value check) are moved aside first (`set_aside`), so a
    failure never overwrites or sits beside a finished record. `outputs`: the task's record files."""
    line = error_line(exc)
    try:
        key: str | None = job_key(cfg)
        config: Any = _without_secrets(OmegaConf.to_container(cfg, resolve=True))
    except Exception:  # a config that cannot even be resolved is itself the error being recorded
        key, config = None, None
    previous = read_metrics(job_dir)
    own = key is not None and previous is not None and previous.get("job_key") == key and previous.get("status") != COMPLETE
    if not own:
        set_aside(job_dir, previous, "a job that failed is recorded there", outputs)
    write_json_atomic(
        job_dir / METRICS,
        {
            "status": FAILED, "job_key": key, **job_header(cfg), "layer": None,
            "error": line, "error_type": type(exc).__name__, "failed_at": now(),
            "versions": environment.versions(), "git_commit": environment.git_commit(), "config": config,
        },
    )
    return line


def error_line(exc: BaseException) -> str:
    """One line for a summary: the message of a VlmSafetyError, else `Type: first line of the message`."""
    if isinstance(exc, VlmSafetyError):
        return str(exc)
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first}"[:500] if first else type(exc).__name__


def now() -> str:
    """UTC wall-clock time, ISO 8601 with milliseconds (start and end of jobs, in metrics.json)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def set_aside(
    job_dir: Path, previous: dict[str, Any] | None, why: str, outputs: Sequence[str] = EVAL_OUTPUTS,
) -> Path | None:
    """Move a job's records found in `job_dir` (`outputs`: files or folders, metrics.json among them) to
    `superseded/<their job key>/` before another job writes there: finished results are never deleted.
    Only when there are records: an output besides metrics.json, or a metrics.json that says complete.
    Returns where they went (None: nothing there)."""
    present = [name for name in outputs if (job_dir / name).exists()]
    complete = (previous or {}).get("status") == COMPLETE
    if not complete and not any(name != METRICS for name in present):
        return None
    key = str((previous or {}).get("job_key") or "unknown")
    dest = job_dir / SUPERSEDED / key
    n = 1
    while dest.exists():
        n += 1
        dest = job_dir / SUPERSEDED / f"{key}.{n}"
    dest.mkdir(parents=True)
    for name in present:
        os.replace(job_dir / name, dest / name)
    status = (previous or {}).get("status") or "unknown status"
    log.warning("%s: %s; the records found there (%s) were moved to %s", job_dir, why, status, dest)
    return dest


# --- partial generations ---------------------------------------------------------------------------
def append_records(path: Path, records: Sequence[GenerationRecord]) -> None:
    """Append one finished batch to `path` and fsync it (a kill can tear at most the last line)."""
    with open(path, "ab") as f:
        f.write("".join(r.to_json() + "\n" for r in records).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def resume_records(
    path: Path, expected: Sequence[tuple[str, int, str]], batch_ends: Sequence[int]
) -> list[GenerationRecord]:
    """The records of a killed job's `path` that a restart keeps: whole batches only.

    expected: per row in generation order, (id, layer, prompt) of this job's record; batch_ends:
    cumulative row counts at the end of each batch. A torn last line is dropped; any other line
    that does not parse or is not this job's next record makes the job start over (warning).
    The file is rewritten (atomically) to exactly the kept records.
    """
    if not path.exists():
        return []
    *lines, torn = path.read_bytes().split(b"\n")
    if torn:
        log.warning("%s: dropping a torn last line (the job was killed while writing it)", path)
    records: list[GenerationRecord] = []
    for k, line in enumerate(lines, start=1):
        try:
            rec: GenerationRecord | None = parse_record(line, f"{path} line {k}")
        except VlmSafetyError:
            rec = None
        if rec is None:
            return _start_over(path, f"line {k} is not a generation record")
        if k > len(expected) or (rec.id, rec.layer, rec.prompt) != expected[k - 1]:
            return _start_over(path, f"line {k} (id {rec.id!r}, layer {rec.layer}) is not this job's record {k}")
        records.append(rec)
    keep = max((e for e in batch_ends if e <= len(records)), default=0)
    if keep != len(records) or torn:
        write_jsonl_atomic(path, records[:keep])
    return records[:keep]


def _start_over(path: Path, why: str) -> list[GenerationRecord]:
    log.warning("%s: %s; starting the job over", path, why)
    path.unlink()
    return []
