"""Cross-layer decoding (docs/PERFORMANCE.md): a layer's records do not depend on what shared its batches.

Every family: the generations of a `layers=[...]` job whose layers share generate calls equal, byte for
byte, those of each layer decoded alone (`layer_batching.enabled=false`, a fresh worker). These run on a
CPU, where the kernels here give the same bits for a row whatever the batch's size (measured: 0 of 1600
organism rows differ); other hardware may not (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json

import pytest
from test_resume import compose, count_generate

from vlmsafety import layer_batching, worker
from vlmsafety.tasks.eval import run_eval

# image prompts only: text-only batches never depend on the layer (decoded once per process already)
ORGANISM = ("limit=8", "max_new_tokens=6", "batch_size=3", "toxicity=none", "attack.categories=[image,utility]")
TINY = ("attack=builtin", "attack.include_benign=false", "judge=[keyword]", "limit=4", "max_new_tokens=5",
        "batch_size=2", "toxicity=none")
CASES = {
    "organism": (ORGANISM, "[0,3,12,23,24]"),
    "tiny_llava": (("model=tiny_llava", *TINY), "[0,12,24]"),
    "tiny_llava_next": (("model=tiny_llava_next", *TINY), "[0,8,24]"),
    "tiny_mllama": (("model=tiny_mllama", *TINY), "[0,2,-1]"),
    "tiny_qwen25_vl": (("model=tiny_qwen25_vl", *TINY), "[0,4,-1]"),
}


def _rows(folder):
    return (folder / "generations.jsonl").read_bytes()


@pytest.mark.parametrize("name", list(CASES))
def test_each_layer_of_a_batched_sweep_equals_that_layer_decoded_alone(name, tmp_path, monkeypatch, cpu):
    overrides, layers = CASES[name]
    monkeypatch.setattr(worker, "_WORKER", None)
    run_eval(compose("layer=null", f"layers={layers}", *overrides, "layer_batching.enabled=false"), tmp_path / "alone")
    alone_calls = worker.get_worker().stats
    assert alone_calls.shared_batches == 0

    monkeypatch.setattr(worker, "_WORKER", None)
    w = worker.get_worker()
    cfg = compose("layer=null", f"layers={layers}", *overrides)
    adapter, _ = w.model(cfg.model, cfg.device)
    calls = count_generate(adapter, monkeypatch)
    run_eval(cfg, tmp_path / "batched")
    folders = sorted(p.name for p in (tmp_path / "alone").iterdir() if p.is_dir())
    assert len(folders) == len(json.loads(layers))
    for folder in folders:
        assert _rows(tmp_path / "batched" / folder) == _rows(tmp_path / "alone" / folder), folder
    # the batches were shared: one generate call per prompt batch (the budget fits every layer here) ...
    metrics = [json.loads((tmp_path / "batched" / f / "metrics.json").read_text()) for f in folders]
    n_batches = -(-metrics[0]["n"] // int(compose(*overrides).batch_size))
    assert len(calls) == n_batches and w.stats.shared_batches == n_batches
    assert sum(m["shared_layer_records"] for m in metrics) == metrics[0]["n"] * (len(folders) - 1)
    # ... and the layers do answer differently (a test that could not fail otherwise)
    responses = {f: [json.loads(r)["response"] for r in _rows(tmp_path / "batched" / f).splitlines()] for f in folders}
    assert len({tuple(v) for v in responses.values()}) > 1


def test_budget_splits_layers_into_chunks_and_sampling_is_never_shared(tmp_path, monkeypatch, cpu):
    monkeypatch.setattr(worker, "_WORKER", None)
    w = worker.get_worker()
    cfg = compose("layer=null", "layers=[0,1,2,3,4]", *ORGANISM, "layer_batching.max_rows=6")  # 2 layers × 3 rows
    adapter, _ = w.model(cfg.model, cfg.device)
    calls = count_generate(adapter, monkeypatch)
    run_eval(cfg, tmp_path / "chunks")
    # batches of 3, 3 and 2 prompts: chunks [0,1] [2,3] [4] twice, then [0,1,2] [3,4]
    assert len(calls) == 3 + 3 + 2
    calls.clear()
    run_eval(compose("layer=null", "layers=[0,1]", *ORGANISM, "do_sample=true"), tmp_path / "sampled")
    assert len(calls) == 2 * 3 and w.stats.shared_batches == 3 * 2


def test_chunks_keep_layers_in_order_with_the_asking_layer_first():
    assert layer_batching.chunks([0, 1, 2, 3, 4], 3, 2) == [[2, 3], [0, 1], [4]]
    assert layer_batching.chunks([5, 9], 9, 8) == [[5, 9]]
    assert layer_batching.chunks([1, 2], 1, 0) == [[1], [2]]


@pytest.mark.slow
def test_batched_sweep_killed_mid_batch_resumes_to_the_records_of_layers_decoded_alone(tmp_path):
    """`python run.py -m layer=...` (the project's launcher plans the jobs): SIGKILL while the first job decodes
    the shared batches, rerun the command: every job complete, byte-identical to a sweep without sharing."""
    import os
    import signal
    import time

    from test_pipeline import run_cli
    from test_sweeps import _jobs, _start, _status

    args = ("-m", "layer=0,4,12,23,24", "limit=6", "max_new_tokens=6", "batch_size=2", "attack.categories=[image,utility]")
    killed, alone = tmp_path / "killed", tmp_path / "alone"
    ref = _start(*args, "layer_batching.enabled=false", f"hydra.sweep.dir={alone}", log=tmp_path / "alone.log")
    proc = _start(*args, f"hydra.sweep.dir={killed}", log=tmp_path / "killed.log")
    first = killed / "0" / "generations.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if first.exists() and first.read_bytes().count(b"\n") >= 2:  # job 0 is between its shared batches
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert _status(killed / "0") == "running" and not (killed / "1").exists()

    p = run_cli(*args, f"hydra.sweep.dir={killed}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert ref.wait(timeout=240) == 0, (tmp_path / "alone.log").read_text()[-3000:]
    assert [_status(j) for j in _jobs(killed)] == ["complete"] * 5
    metrics = [json.loads((j / "metrics.json").read_text()) for j in _jobs(killed)]
    assert metrics[0]["resumed_records"] == 2 and metrics[0]["tokens_for_other_layers"] > 0
    # job 0 kept its first batch from the killed run, so job 1 decoded that batch for layers 4..24 itself
    assert [m["shared_layer_records"] for m in metrics] == [0, 4, 6, 6, 6]
    for a, b in zip(_jobs(killed), _jobs(alone), strict=True):
        assert (a / "generations.jsonl").read_bytes() == (b / "generations.jsonl").read_bytes(), a.name
    assert (killed / "summary.csv").read_text() == (alone / "summary.csv").read_text()


def test_a_sweep_whose_config_reads_hydras_job_config_still_shares_batches(tmp_path):
    """The launcher plans with each job's config resolved under that job's Hydra config, as the job resolves it:
    a key that reads `${hydra:...}` (here the same override_dirname for every layer) gives the plan the job's own
    job key, so the layers share their batches (they did not when the plan resolved it under the sweep's config)."""
    from test_pipeline import run_cli

    sweep = tmp_path / "sweep"
    p = run_cli(
        "-m", "layer=0,4", "limit=4", "max_new_tokens=4", "batch_size=2", "attack.categories=[image]",
        "+tag=${hydra:job.override_dirname}", "hydra.job.config.override_dirname.exclude_keys=[layer]",
        f"hydra.sweep.dir={sweep}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = [json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert metrics[0]["config"]["tag"] == metrics[1]["config"]["tag"] == (
        r"+tag=$\{hydra\:job.override_dirname\},attack.categories=[image],batch_size=2,limit=4,max_new_tokens=4"
    )
    assert [m["shared_layer_records"] for m in metrics] == [0, 4]


def test_a_failing_shared_call_falls_back_to_each_layer_alone(tmp_path, monkeypatch, caplog, cpu):
    """Out of memory in a call shared with other layers must not fail this layer's job (nor the next ones)."""
    import logging

    monkeypatch.setattr(worker, "_WORKER", None)
    run_eval(compose("layer=null", "layers=[0,12]", *ORGANISM, "layer_batching.enabled=false"), tmp_path / "alone")
    monkeypatch.setattr(worker, "_WORKER", None)
    w = worker.get_worker()
    cfg = compose("layer=null", "layers=[0,12]", *ORGANISM)
    adapter, _ = w.model(cfg.model, cfg.device)
    real = type(adapter).generate.__get__(adapter)

    def generate(prompts, images, encoded, layer, settings):
        if not isinstance(layer, int) and len(set(layer)) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(prompts, images, encoded, layer, settings)

    monkeypatch.setattr(adapter, "generate", generate)
    with caplog.at_level(logging.WARNING):
        run_eval(cfg, tmp_path / "fallback")
    assert "decode layers apart" in caplog.text and w.sharing_failed
    for folder in ("layer_0", "layer_12"):
        assert _rows(tmp_path / "fallback" / folder) == _rows(tmp_path / "alone" / folder)
