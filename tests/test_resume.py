"""In one process: job keys, resuming a partly written job, `layers=[...]`, and worker reuse."""

from __future__ import annotations

import gc
import json
import logging
import weakref

import pytest
from conftest import REPO

from vlmsafety import jobs, worker
from vlmsafety.tasks.eval import run_eval, run_job


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


# 4 batches per job; image parts only, so that every batch is decoded (text-only batches are decoded
# once per process and reused across layers: test_text_only_batches_are_decoded_once_per_process)
SMALL = ("limit=8", "max_new_tokens=4", "batch_size=2", "toxicity=none", "attack.categories=[image,utility]")


@pytest.fixture
def fresh_worker(monkeypatch, cpu):
    """A new process-wide worker for this test (the counters start at zero)."""
    monkeypatch.setattr(worker, "_WORKER", None)
    return worker.get_worker()


class Killed(BaseException):
    """Stands in for SIGKILL: escapes every `except Exception`, leaves the files as they are."""


def count_generate(adapter, monkeypatch, kill_after: int | None = None) -> list[int]:
    """Count `adapter.generate` calls; raise Killed on call number kill_after + 1."""
    calls: list[int] = []
    real = type(adapter).generate.__get__(adapter)  # the adapter's own method, not an earlier wrapper

    def generate(*args, **kwargs):
        if kill_after is not None and len(calls) == kill_after:
            raise Killed
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(adapter, "generate", generate)
    return calls


def test_job_key_ignores_paths_and_run_controls_but_not_what_changes_records():
    base = jobs.job_key(compose("layer=3"))
    assert jobs.job_key(compose("layer=3", "resume=false", "fail_fast=true", "debug=true", "sweep_dir=/x")) == base
    assert jobs.job_key(compose("layer=3", "feature_cache.max_gb=1")) == base
    assert jobs.job_key(compose("layer=3", "probe.lm_layer=2", "probe.folds=3")) == base  # task=probe settings
    assert jobs.job_key(compose("layer=null", "layers=[3]")) != base  # the job of layers=[3] keys its layer as layer=3
    for change in ("layer=4", "limit=5", "max_new_tokens=9", "batch_size=3", "judge=[keyword,harmbench_cls_standin]"):
        assert jobs.job_key(compose("layer=3", change)) != base, change


def test_partly_written_job_resumes_from_its_last_finished_batch(tmp_path, fresh_worker, monkeypatch, caplog):
    cfg = compose("layer=3", *SMALL, "do_sample=true")  # sampling: resumed batches must draw the same numbers
    run_job(cfg, tmp_path / "reference")
    adapter, loaded = fresh_worker.model(cfg.model, cfg.device)
    assert not loaded

    job = tmp_path / "job"
    job.mkdir()
    count_generate(adapter, monkeypatch, kill_after=2)
    with pytest.raises(Killed):
        run_job(cfg, job)
    assert json.loads((job / "metrics.json").read_text())["status"] == "running"
    lines = (job / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["verdicts"] == {} for line in lines)
    with open(job / "generations.jsonl", "a") as f:
        f.write(lines[0][: len(lines[0]) // 2])  # the kill tore the next batch's first line

    calls = count_generate(adapter, monkeypatch)
    with caplog.at_level(logging.INFO):
        m = run_job(cfg, job)
    assert len(calls) == 2  # only the two unfinished batches were generated
    assert "torn last line" in caplog.text and "resuming after batch 2/4" in caplog.text
    assert m["status"] == "complete" and m["resumed_records"] == 4
    ref = tmp_path / "reference" / "generations.jsonl"
    assert (job / "generations.jsonl").read_bytes() == ref.read_bytes()

    # a partial file that is not this job's records: start over, with a warning
    (job / "metrics.json").write_text(json.dumps({"status": "running", "job_key": m["job_key"]}))
    (job / "generations.jsonl").write_text(ref.read_text().splitlines()[1] + "\n")
    calls = count_generate(adapter, monkeypatch)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_job(cfg, job)
    assert len(calls) == 4 and "starting the job over" in caplog.text
    assert (job / "generations.jsonl").read_bytes() == ref.read_bytes()


def test_complete_job_is_skipped_and_a_changed_one_recomputed(tmp_path, fresh_worker, monkeypatch):
    cfg = compose("layer=5", *SMALL)
    first = run_job(cfg, tmp_path)
    adapter, _ = fresh_worker.model(cfg.model, cfg.device)
    calls = count_generate(adapter, monkeypatch)
    assert run_job(cfg, tmp_path) == first and calls == []
    run_job(compose("layer=5", *SMALL, "resume=false"), tmp_path)
    assert len(calls) == 4
    changed = run_job(compose("layer=5", *SMALL[:-1], "max_new_tokens=3", "toxicity=none"), tmp_path)
    assert len(calls) == 8 and changed["job_key"] != first["job_key"]
    # finished generations are never deleted: each rerun moved the previous ones aside, named by their key
    kept = sorted(d.name for d in (tmp_path / "superseded").iterdir())
    assert kept == [first["job_key"], f"{first['job_key']}.2"]
    assert all((tmp_path / "superseded" / k / "generations.jsonl").stat().st_size for k in kept)


def test_one_job_many_layers_loads_once_encodes_once_and_isolates_failures(tmp_path, fresh_worker):
    cfg = compose("layer=null", "layers=[0,30,12,-1]", *SMALL)
    with pytest.raises(jobs.JobsFailed, match="1 of 4 layers failed; layer 30: layer 30 is out of range"):
        run_eval(cfg, tmp_path)
    status = {d.name: json.loads((d / "metrics.json").read_text()) for d in tmp_path.iterdir() if d.is_dir()}
    assert {k: (m["status"], m["layer"]) for k, m in status.items()} == {
        "layer_0": ("complete", 0), "layer_30": ("failed", None), "layer_12": ("complete", 12), "layer_-1": ("complete", 24),
    }
    # the job of layers=[...] is keyed exactly as the single-layer job it stands for
    assert status["layer_12"]["job_key"] == jobs.job_key(compose("layer=12", *SMALL))
    # a single run of layers=[...] summarises its own folder, failures listed
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 5 and any(",failed," in row and "out of range" in row for row in summary)
    rows = [json.loads(line) for line in (tmp_path / "layer_0" / "generations.jsonl").open()]
    images = {r["image"]["sha256"] for r in rows if r["image"]}
    assert fresh_worker.stats.models_loaded == 1
    assert fresh_worker.stats.images_encoded == len(images)  # once per image, not once per layer


def test_worker_releases_a_model_when_the_sweep_moves_to_another(tmp_path, fresh_worker):
    run_job(compose("layer=1", *SMALL), tmp_path / "a")
    llava, _ = fresh_worker.model(compose().model, "auto")
    ref = weakref.ref(llava.model)
    key = llava.cache_key
    assert fresh_worker.features.nbytes > 0
    del llava
    run_job(compose("model=tiny_mllama", "layer=2", *SMALL), tmp_path / "b")
    gc.collect()
    assert ref() is None  # the first model's weights are gone, not merely unreferenced by the worker
    assert fresh_worker.stats.models_loaded == 2 and fresh_worker.stats.models_released == 1
    assert not [k for k in fresh_worker.features._entries if k[0] == key]


def test_score_leaves_unfinished_jobs_alone(tmp_path, fresh_worker, caplog):
    from vlmsafety.tasks import get_task

    run_job(compose("layer=2", *SMALL), tmp_path / "0")
    killed = tmp_path / "1"
    killed.mkdir()
    (killed / "metrics.json").write_text(json.dumps({"status": "running", "job_key": "x"}))
    partial = (tmp_path / "0" / "generations.jsonl").read_text().splitlines()[:2]
    (killed / "generations.jsonl").write_text("".join(line + "\n" for line in partial))
    before = (killed / "generations.jsonl").read_bytes()
    with caplog.at_level(logging.WARNING):
        out = get_task("score")(compose("task=score", f"run_dir={tmp_path}", "toxicity=none"), tmp_path / "score")
    assert out["jobs"] == [str(tmp_path / "0")] and "skipping" in caplog.text
    assert (killed / "generations.jsonl").read_bytes() == before


def test_text_only_batches_are_decoded_once_per_process(tmp_path, fresh_worker, monkeypatch):
    mixed = ("limit=12", "max_new_tokens=4", "batch_size=4", "toxicity=none", "attack.categories=[text,image,benign_text]")
    first = run_job(compose("layer=3", *mixed), tmp_path / "a")
    adapter, _ = fresh_worker.model(compose().model, "auto")
    calls = count_generate(adapter, monkeypatch)
    second = run_job(compose("layer=9", *mixed), tmp_path / "b")
    rows = [json.loads(line) for line in (tmp_path / "b" / "generations.jsonl").open()]
    text_only = [r for r in rows if r["image"] is None]
    image_batches = -(-sum(r["image"] is not None for r in rows) // 4)
    assert text_only and first["reused_text_records"] == 0 and second["reused_text_records"] == len(text_only)
    assert len(calls) == image_batches  # the text-only batches of layer 9 were not decoded again
    # ... and they are exactly what a fresh process decodes at layer 9
    monkeypatch.setattr(worker, "_WORKER", None)
    run_job(compose("layer=9", *mixed), tmp_path / "fresh")
    assert (tmp_path / "fresh" / "generations.jsonl").read_bytes() == (tmp_path / "b" / "generations.jsonl").read_bytes()
