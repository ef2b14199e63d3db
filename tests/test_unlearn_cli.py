"""`python run.py -m task=unlearn unlearn=textual,multimodal` end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import csv
import json
import re

import pytest
from test_pipeline import run_cli
from test_report_html import Page

pytestmark = pytest.mark.slow


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_textual_and_multimodal_in_one_process_each_from_the_clean_base(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_cli(
        "-m", "task=unlearn", "unlearn=textual,multimodal", "limit=3", "max_new_tokens=4",
        "unlearn.train.steps=3", "unlearn.train.lr=0.02", "unlearn.train.forget_nll_cap=null",
        "unlearn.data.max_harmful=3", "unlearn.data.max_normal=4", "unlearn.data.eval_attacks=[organism_text,organism_typo]",
        f"hydra.sweep.dir={sweep}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = [sweep / "0", sweep / "1"]
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert [m["unlearn"] for m in metrics] == ["textual", "multimodal"]
    for job, m in zip(jobs, metrics, strict=True):
        assert m["status"] == "complete" and m["task"] == "unlearn" and m["train"]["steps"] == 3
        assert (job / "adapter" / "adapter_model.safetensors").is_file()
        assert len((job / "train_log.jsonl").read_text().splitlines()) == 3
        assert {"load", "eval_before", "train", "eval_after"} <= set(m["device_hours"])
        for phase in ("before", "after"):
            for attack in ("organism_text", "organism_typo"):
                sub = json.loads((job / "eval" / phase / attack / "layer_23" / "metrics.json").read_text())
                assert sub["phase"] == phase and sub["attack"] == attack and sub["n"] == 3
    textual, multimodal = metrics
    assert textual["cost"]["images"] == 0 and multimodal["cost"]["images"] > 0
    assert multimodal["cost"]["flops"]["total"] > textual["cost"]["flops"]["total"]

    def gens(job, phase):
        return (job / "eval" / phase / "organism_typo" / "layer_23" / "generations.jsonl").read_text()

    # job 1 started from the clean base: its "before" equals job 0's (served from the worker's cache of the base
    # model's batches; that the base comes back exactly is test_unlearn_train's)
    assert gens(jobs[0], "after") != gens(jobs[0], "before")
    assert gens(jobs[1], "before") == gens(jobs[0], "before")

    results = rows(sweep / "unlearn_summary.csv")
    parts = {(r["unlearn"], r["attack"], r["part"]) for r in results}
    assert ("textual", "organism_text", "text") in parts and ("multimodal", "organism_typo", "image") in parts
    assert {"asr_organism_oracle_before", "asr_organism_oracle_after", "degenerate_harmful_after", "accuracy_after",
            "label_harmful_refusal_after", "collapse"} <= set(results[0])
    # the organism's ground truth gives the degenerate rate
    assert {r["reference_judge"] for r in results} == {"organism_oracle"} == {r["degenerate_by_after"] for r in results}
    costs = {r["unlearn"]: r for r in rows(sweep / "unlearn_cost.csv")}
    assert float(costs["textual"]["train_flops_vs_textual"]) == 1.0
    assert float(costs["multimodal"]["train_flops_vs_textual"]) > 1.0
    out = p.stderr + p.stdout
    assert "Unlearning: safety before → after" in out and "judged by organism_oracle" in out and "Unlearning cost" in out
    # one console line per job (the per-phase details are in run.log)
    assert len([line for line in p.stderr.splitlines() if re.search(r" INFO #\d unlearn=\w+ · organism_oracle ASR before→after", line)]) == 2

    # report.html: before → after figures per judge, and per attack set a browser with each recipe's before and after
    page = Page()
    page.feed((sweep / "report.html").read_text(encoding="utf-8"))
    assert page.errors == [] and "ASR before → after — organism_oracle" in page.figures
    assert len(page.rows) == 6 and all(len(r["cells"]) == 4 for r in page.rows)
    for k, attack in enumerate(("organism_text", "organism_typo")):
        columns = [[json.loads(line)["response"] for line in (job / "eval" / phase / attack / "layer_23" / "generations.jsonl").read_text().splitlines()]
                   for job in (jobs[1], jobs[0]) for phase in ("before", "after")]  # recipes in name order
        for i in range(3):
            assert [c["text"] for c in page.rows[3 * k + i]["cells"]] == [col[i] for col in columns]


def test_unlearn_without_a_recipe_or_with_a_bad_one_says_so(tmp_path):
    from omegaconf import OmegaConf

    from vlmsafety.errors import VlmSafetyError
    from vlmsafety.tasks.unlearn import run_unlearn

    cfg = OmegaConf.create({"unlearn": {"name": "none", "method": None}})
    with pytest.raises(VlmSafetyError, match="task=unlearn needs a recipe: unlearn=textual"):
        run_unlearn(cfg, tmp_path)
    cfg = OmegaConf.create({"seed": 0, "unlearn": {"name": "multimodal", "method": "multimodal", "data": {"image": "none"}}})
    with pytest.raises(VlmSafetyError, match="trains with images; set unlearn.data.image"):
        run_unlearn(cfg, tmp_path)
    cfg = OmegaConf.create({"seed": 0, "unlearn": {"name": "x", "method": "textual", "loss": {"kl_wieght": 1}}})
    with pytest.raises(VlmSafetyError, match="unknown option 'kl_wieght'"):
        run_unlearn(cfg, tmp_path)


def test_eval_layers_default_all_or_a_list():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from vlmsafety.errors import VlmSafetyError
    from vlmsafety.tasks.unlearn import eval_layers

    adapter = SimpleNamespace(num_layers=24, default_layer=23)
    cfg = OmegaConf.create({"layer": None, "model": {"name": "m"}})
    assert eval_layers("default", cfg, adapter) == [23]
    assert eval_layers("default", OmegaConf.create({"layer": 7, "model": {"name": "m"}}), adapter) == [7]
    assert eval_layers("all", cfg, adapter) == list(range(25))
    assert eval_layers([0, -1, 12, 24], cfg, adapter) == [0, 24, 12]
    with pytest.raises(VlmSafetyError, match="valid layers are 0..24"):
        eval_layers([30], cfg, adapter)


def test_a_nested_unlearn_group_option_is_checked_on_the_command_line():
    from conftest import REPO

    from vlmsafety.cli import check_group_overrides
    from vlmsafety.errors import VlmSafetyError

    check_group_overrides(["unlearn/data=pku_saferlhf", "unlearn/train=full"], REPO / "conf")
    with pytest.raises(VlmSafetyError, match="unknown unlearn/data 'pku'; valid choices: builtin, organism, organism_vision, pku_saferlhf, vlguard"):
        check_group_overrides(["unlearn/data=pku"], REPO / "conf")


def test_layerwise_sft_draws_its_layers_logs_them_and_evaluates_every_listed_layer(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_cli(
        "-m", "task=unlearn", "unlearn=layerwise_sft", "limit=3", "max_new_tokens=4", "unlearn.train.steps=3",
        "unlearn.data.max_harmful=4", "unlearn.data.max_normal=6", "unlearn.data.eval_attacks=[organism_image]",
        "unlearn.eval.layers=[0,12,23]", "unlearn.train.layers=[0,12]", f"hydra.sweep.dir={sweep}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((sweep / "0" / "metrics.json").read_text())
    assert m["unlearn"] == "layerwise_sft" and m["data"]["image"] == ["benign", "figstep"]
    assert m["train"]["layers"]["distribution"] == {"0": 0.5, "12": 0.5}
    assert set(m["train"]["layers"]["drawn"]) <= {"0", "12"} and sum(m["train"]["layers"]["drawn"].values()) > 0
    log = [json.loads(line) for line in (sweep / "0" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(set(r["layers_harmful"] + r["layers_normal"]) <= {0, 12} for r in log)
    for phase in ("before", "after"):
        for layer in (0, 12, 23):
            assert (sweep / "0" / "eval" / phase / "organism_image" / f"layer_{layer}" / "metrics.json").is_file()
    assert (sweep / "unlearn_asr_by_layer.png").read_bytes()[:4] == b"\x89PNG"
    assert "Across 3 vision layers" in p.stdout + p.stderr


def test_an_unlearn_job_rerun_keeps_a_complete_one_and_moves_another_configs_records_aside(tmp_path, cpu):
    """Records are never overwritten: a rerun with the same config is skipped, one with another config first
    moves the earlier job's metrics, training log, adapter and evaluations to superseded/<its job key>/."""
    from test_resume import compose

    from vlmsafety.tasks.unlearn import run_unlearn

    small = ("task=unlearn", "unlearn=textual", "limit=2", "max_new_tokens=3", "toxicity=none",
             "unlearn.data.max_harmful=2", "unlearn.data.max_normal=2", "unlearn.data.eval_attacks=[organism_text]")
    first = run_unlearn(compose(*small, "unlearn.train.steps=2"), tmp_path)
    assert first["status"] == "complete" and first["job_key"] and first["train"]["steps"] == 2
    outputs = ("metrics.json", "train_log.jsonl", "adapter/adapter_model.safetensors",
               "eval/after/organism_text/layer_23/generations.jsonl")
    before = {name: (tmp_path / name).read_bytes() for name in outputs}

    assert run_unlearn(compose(*small, "unlearn.train.steps=2"), tmp_path) == first  # complete: skipped
    assert {name: (tmp_path / name).read_bytes() for name in outputs} == before

    second = run_unlearn(compose(*small, "unlearn.train.steps=3"), tmp_path)
    assert second["job_key"] != first["job_key"] and second["train"]["steps"] == 3
    kept = tmp_path / "superseded" / first["job_key"]
    assert {name: (kept / name).read_bytes() for name in outputs} == before
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 3
    assert not (tmp_path / "superseded" / first["job_key"] / "superseded").exists()
