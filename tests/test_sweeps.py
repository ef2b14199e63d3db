"""Sweeps that survive: resume after a kill, failure isolation, submitit_local (docs/sweeps.md).

The sweeps run as a user runs them (`python run.py -m ...` in a subprocess); no test asserts a time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_pipeline import run_cli

pytestmark = pytest.mark.slow

SMALL = ("limit=6", "max_new_tokens=6", "batch_size=2")  # 3 batches per job: a kill can land mid-job


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}


def _start(*args: str, log: Path) -> subprocess.Popen:
    """`python run.py ARGS` in its own process group (so that a kill reaches all of it)."""
    out = open(log, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _status(job: Path) -> str | None:
    try:
        return json.loads((job / "metrics.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def _jobs(sweep: Path) -> list[Path]:
    return sorted((d for d in sweep.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))


def _snapshot(job: Path) -> dict[str, tuple[bytes, int]]:
    return {name: ((job / name).read_bytes(), (job / name).stat().st_mtime_ns) for name in ("metrics.json", "generations.jsonl")}


def test_killed_sweep_resumes_without_recomputing_finished_jobs(tmp_path):
    args = ("-m", "layer=range(0,10)", *SMALL)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    ref = _start(*args, f"hydra.sweep.dir={reference}", log=tmp_path / "reference.log")  # uninterrupted, alongside
    proc = _start(*args, f"hydra.sweep.dir={killed}", log=tmp_path / "killed.log")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if killed.is_dir() and sum(_status(j) == "complete" for j in _jobs(killed)) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]

    done = [j for j in _jobs(killed) if _status(j) == "complete"]
    assert 3 <= len(done) < 10 and not (killed / "summary.csv").exists()
    before = {j.name: _snapshot(j) for j in done}
    hydra_config = {j.name: (j / ".hydra" / "config.yaml").read_bytes() for j in done}

    p = run_cli(*args, f"hydra.sweep.dir={killed}")  # the same command again
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("skipping") == len(done)
    for j in done:  # finished jobs were not recomputed: same bytes, same mtimes
        assert _snapshot(j) == before[j.name]
        assert (j / ".hydra" / "config.yaml").read_bytes() == hydra_config[j.name]
    assert [_status(j) for j in _jobs(killed)] == ["complete"] * 10

    assert ref.wait(timeout=240) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    # the uninterrupted sweep loaded the model once and encoded each image once, for all 10 layers
    worker = [json.loads((j / "metrics.json").read_text())["worker"] for j in _jobs(reference)]
    rows = [json.loads(line) for line in (reference / "0" / "generations.jsonl").open()]
    images = {r["image"]["sha256"] for r in rows if r["image"]}
    assert [w["loaded_model"] for w in worker] == [True] + [False] * 9
    assert sum(w["images_encoded"] for w in worker) == len(images) == worker[0]["images_encoded"]
    assert (killed / "summary.csv").read_text() == (reference / "summary.csv").read_text()
    for a, b in zip(_jobs(killed), _jobs(reference), strict=True):
        assert (a / "generations.jsonl").read_bytes() == (b / "generations.jsonl").read_bytes()


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    isolated, fail_fast = tmp_path / "isolated", tmp_path / "fail_fast"
    # both sweeps at once (each is mostly start-up time); layer 40 is out of range for the organism (0..24)
    ff = _start("-m", "layer=40,0", "fail_fast=true", *SMALL, f"hydra.sweep.dir={fail_fast}", log=tmp_path / "ff.log")
    p = run_cli("-m", "layer=0,40,23", *SMALL, f"hydra.sweep.dir={isolated}")
    assert p.returncode == 1, p.stderr[-3000:]
    failed = json.loads((isolated / "1" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["error_type"] == "VlmSafetyError"
    assert "layer 40 is out of range" in failed["error"] and "valid layers are 0..24" in failed["error"]
    assert [_status(j) for j in _jobs(isolated)] == ["complete", "failed", "complete"]
    rows = (isolated / "summary.csv").read_text().splitlines()
    assert any(r.startswith("1,failed,eval,organism,organism,none,40,") and "out of range" in r for r in rows)
    assert "1 of 3 jobs did not complete" in p.stderr and "Traceback" not in p.stderr

    # fail_fast=true: Hydra's stop-at-first-error; the failed job is still recorded
    assert ff.wait(timeout=240) == 2, (tmp_path / "ff.log").read_text()[-3000:]
    assert _status(fail_fast / "0") == "failed" and not (fail_fast / "1").exists()


def test_submitit_local_runs_jobs_two_at_a_time(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_cli(
        "-m", "hydra/launcher=submitit_local", "hydra.sweeper.max_batch_size=2", "layer=0,5,23",
        "limit=2", "max_new_tokens=2", f"hydra.sweep.dir={sweep}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "deprecated" not in p.stderr
    jobs = _jobs(sweep)
    metrics = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert [(m["status"], m["layer"]) for m in metrics] == [("complete", 0), ("complete", 5), ("complete", 23)]
    # each job ran in a process of its own, launched by submitit in two batches: (0, 1), then (2)
    assert len({int(d.name) for d in (sweep / ".submitit").iterdir() if d.name.isdigit()}) == 3
    assert (p.stdout + p.stderr).count("Submitit 'local' sweep output dir") == 2  # one line per launched batch
    t = [{k: dt.datetime.fromisoformat(m[k]) for k in ("started_at", "finished_at")} for m in metrics]
    assert t[2]["started_at"] >= max(t[0]["finished_at"], t[1]["finished_at"])
    assert len((sweep / "summary.csv").read_text().splitlines()) == 4
