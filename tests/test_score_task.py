"""task=score re-judges a stored sweep without generating; an eval with Perspective leaks no key."""

from __future__ import annotations

import csv
import json
import os

import pytest
from fake_perspective import FakePerspective
from test_pipeline import run_cli

pytestmark = pytest.mark.slow

KEY = "sk-fake-perspective-key-0xC0FFEE"


def _rows(job):
    return [json.loads(line) for line in (job / "generations.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2-layer sweep judged by keyword and scored by profanity + Perspective (fake server)."""
    tmp = tmp_path_factory.mktemp("score")
    sweep = tmp / "sweep"
    os.environ["PERSPECTIVE_API_KEY"] = KEY  # the subprocess inherits it; removed below
    try:
        with FakePerspective(KEY) as server:
            p = run_cli(
                "-m", "layer=0,23", "limit=6", "max_new_tokens=6", "toxicity=[profanity,perspective]",
                f"toxicity.perspective.endpoint={server.endpoint}", "toxicity.perspective.qps=50",
                f"toxicity.perspective.cache_dir={tmp / 'perspective-cache'}", f"hydra.sweep.dir={sweep}",
            )
    finally:
        del os.environ["PERSPECTIVE_API_KEY"]
    assert p.returncode == 0, p.stderr[-3000:]
    assert server.requests and all(r["headers"]["X-Goog-Api-Key"] == KEY for r in server.requests)
    return sweep, p


def test_eval_with_perspective_writes_scores_and_no_key(sweep):
    sweep_dir, p = sweep
    rows = _rows(sweep_dir / "0")
    assert all(r["toxicity"]["perspective"]["TOXICITY"] is not None for r in rows if r["response"].strip())
    m = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert m["toxicity"]["perspective"]["TOXICITY"]["n_scored"] >= 1
    files = [f for f in sweep_dir.rglob("*") if f.is_file()]
    assert len(files) > 10
    leaked = [str(f) for f in files if KEY.encode() in f.read_bytes()]
    assert leaked == [] and KEY not in p.stdout + p.stderr


def test_score_rejudges_a_sweep_without_generating(sweep, tmp_path):
    sweep_dir, _ = sweep
    jobs = [sweep_dir / "0", sweep_dir / "1"]
    before = {job: _rows(job) for job in jobs}
    eval_metrics = {job: json.loads((job / "metrics.json").read_text()) for job in jobs}
    # model.builtin names a model that does not exist: loading the VLM would fail the run
    p = run_cli(
        "task=score", f"run_dir={sweep_dir}", "judge=[keyword,harmbench_cls_standin]", "toxicity=none",
        "model.builtin=no_such_model_would_fail_to_load", f"hydra.run.dir={tmp_path / 'score'}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    for job in jobs:
        rows = _rows(job)
        assert [r["response"] for r in rows] == [r["response"] for r in before[job]]  # nothing regenerated
        assert [r["n_new_tokens"] for r in rows] == [r["n_new_tokens"] for r in before[job]]
        for old, new in zip(before[job], rows, strict=True):
            assert new["verdicts"]["keyword"]["unsafe"] == old["verdicts"]["keyword"]["unsafe"]
            assert new["toxicity"] == old["toxicity"]  # scorers that did not run are kept
            cls = new["verdicts"]["harmbench_cls_standin"]
            assert cls["unsafe"] in (True, False, None) and "answer" in cls
            assert cls["outcome"] == ("degenerate" if cls["unsafe"] is None or new["degenerate"] else
                                      "compliance" if cls["unsafe"] else "refusal")
        m = json.loads((job / "metrics.json").read_text())
        # judges that did not run again (the default organism_oracle) keep their verdicts and metrics
        assert set(m["asr"]) == {"keyword", "organism_oracle", "harmbench_cls_standin"}
        harmful = [r for r in rows if r["harmful"]]
        labels = [r["verdicts"]["harmbench_cls_standin"]["unsafe"] for r in harmful]
        asr = m["asr"]["harmbench_cls_standin"]
        assert (asr["k"], asr["n"], asr["n_invalid"]) == (labels.count(True), len(labels) - labels.count(None), labels.count(None))
        assert "keyword vs harmbench_cls_standin" in m["agreement"]
        assert m["rescored"]["judges"] == ["keyword", "harmbench_cls_standin"]
        assert m["degenerate"]["harmful"]["k"] == sum(r["degenerate"] for r in harmful)
        # the eval's own facts stay (a job whose answers another layer's job decoded spent ~0 s generating)
        assert m["status"] == "complete" and m["timings_s"]["generate"] == eval_metrics[job]["timings_s"]["generate"]
        assert m["new_tokens"] == eval_metrics[job]["new_tokens"] > 0
    with open(sweep_dir / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 2
    for row, job in zip(summary, jobs, strict=True):
        m = json.loads((job / "metrics.json").read_text())
        value = m["asr"]["harmbench_cls_standin"]["value"]
        assert row["asr_harmbench_cls_standin"] == ("" if value is None else str(value))
        assert "kappa_keyword_vs_harmbench_cls_standin" in row and "degenerate_rate" in row
    assert "Judge agreement" in p.stderr + p.stdout


def test_score_needs_an_existing_run_dir(tmp_path):
    from omegaconf import OmegaConf

    from vlmsafety.errors import VlmSafetyError
    from vlmsafety.tasks import get_task

    score = get_task("score")
    with pytest.raises(VlmSafetyError, match="task=score needs run_dir="):
        score(OmegaConf.create({"run_dir": None}), tmp_path)
    with pytest.raises(VlmSafetyError, match="no generations.jsonl under"):
        score(OmegaConf.create({"run_dir": str(tmp_path)}), tmp_path)


def test_score_one_job_of_a_sweep_updates_the_sweep_summary(sweep, tmp_path):
    import shutil

    from omegaconf import OmegaConf

    from vlmsafety.tasks import get_task

    sweep_dir = tmp_path / "copy"
    shutil.copytree(sweep[0], sweep_dir)
    cfg = OmegaConf.create(
        {"run_dir": str(sweep_dir / "1"), "judge": {"keyword_harmbench": {"type": "keyword", "variant": "harmbench"}},
         "toxicity": {}}
    )
    out = get_task("score")(cfg, tmp_path / "out")
    assert out["jobs"] == [str(sweep_dir / "1")]
    with open(sweep_dir / "summary.csv") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert rows["0"]["asr_keyword_harmbench"] == ""  # job 0 was not re-judged
    m = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    assert rows["1"]["asr_keyword_harmbench"] == str(m["asr"]["keyword_harmbench"]["value"])
    assert "keyword vs keyword_harmbench" in m["agreement"]
