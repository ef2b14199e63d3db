"""task=eval: load model → build attack set → generate at `layer` → judges + toxicity → records."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vlmsafety import environment
from vlmsafety.attacks import AttackItem, AttackSet, load_attack_set
from vlmsafety.judges import Judge
from vlmsafety.layers import resolve_layer
from vlmsafety.models.base import FamilyAdapter, GenerationSettings
from vlmsafety.records import GENERATIONS, METRICS, GenerationRecord, write_json_atomic, write_jsonl_atomic
from vlmsafety.scoring import apply_judges, apply_scorers, covering, judging_metrics
from vlmsafety.tasks import register_task
from vlmsafety.ui import progress
from vlmsafety.worker import Worker, get_worker

log = logging.getLogger(__name__)


@register_task("eval")
def run_eval(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    worker = get_worker()
    worker.configure(cfg)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    if cfg.model.get("vision_layers") is not None and cfg.model.get("default_layer") is not None:
        # fail before loading weights when the YAML already says the layer is out of range
        resolve_layer(cfg.layer, int(cfg.model.vision_layers), int(cfg.model.default_layer), cfg.model.name)
    # the attack set first: a missing or bad file should not cost a model load
    attack_set = load_attack_set(cfg.attack, limit=cfg.limit, seed=cfg.seed)
    items = attack_set.items
    with timed(timings, "load"):
        adapter, _ = worker.model(cfg.model, cfg.device)
    device = adapter.device
    environment.reset_peak_memory(device)
    layer = resolve_layer(cfg.layer, adapter.num_layers, adapter.default_layer, cfg.model.name)
    n_harmful = sum(it.harmful for it in items)
    log.info(
        "%s · layer %d/%d%s · attack %s (%d harmful, %d benign) · %s",
        cfg.model.name, layer, adapter.num_layers, " (trained default)" if layer == adapter.default_layer else "",
        cfg.attack.name, n_harmful, len(items) - n_harmful, environment.device_description(device),
    )

    # judges and scorers load before generating, so that a missing key or checkpoint fails fast
    with timed(timings, "judge_load"):
        judges = worker.judges(cfg.get("judge"))
        scorers = worker.scorers(cfg.get("toxicity"))
    return evaluate(cfg, worker, adapter, cfg.attack, attack_set, layer, judges, scorers, out_dir, timings, started)


def evaluate(
    cfg: DictConfig, worker: Worker, adapter: FamilyAdapter, attack_cfg: DictConfig, attack_set: AttackSet,
    layer: int, judges: list, scorers: list, out_dir: Path, timings: dict[str, float], started: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate at `layer` for every item, judge, score, and write generations.jsonl and metrics.json.

    The part of `task=eval` after loading; `task=unlearn` calls it for each phase, attack set and
    layer. `extra` is merged into metrics.json; `started` is the job's start (for the total time).
    """
    torch.manual_seed(int(cfg.seed))
    records = generate_records(cfg, worker, adapter, attack_set.items, layer, timings, attack_name=str(attack_cfg.name))
    with timed(timings, "judge"):
        judges = covering(judges, records)
        apply_judges(records, judges)
    with timed(timings, "toxicity"):
        apply_scorers(records, scorers)

    write_jsonl_atomic(out_dir / GENERATIONS, records)
    timings["total"] = time.perf_counter() - started
    metrics = build_metrics(
        cfg, adapter, layer, records, judges, [s.name for s in scorers], timings, attack_set, attack_cfg=attack_cfg,
    )
    metrics.update(extra or {})
    write_json_atomic(out_dir / METRICS, metrics)
    _log_result(metrics)
    return metrics


def generate_records(
    cfg: DictConfig, worker: Worker, adapter: FamilyAdapter, items: list[AttackItem], layer: int, timings: dict,
    attack_name: str | None = None,
) -> list[GenerationRecord]:
    """One record per item, generated at `layer` (batched; text-only and image prompts apart), in item order."""
    attack_name = attack_name or str(cfg.attack.name)
    settings = GenerationSettings(
        max_new_tokens=int(cfg.max_new_tokens), do_sample=bool(cfg.do_sample),
        temperature=float(cfg.temperature), top_p=float(cfg.top_p),
    )
    batch_size = max(1, int(cfg.batch_size))
    # Text-only and image prompts go in separate batches: in some families (Mllama) a text-only
    # row of a mixed batch still attends to a padding image, which would make its answer depend
    # on the layer and on its batch-mates.
    groups = [[i for i, it in enumerate(items) if (it.image is not None) == has] for has in (True, False)]
    order = groups[0] + groups[1]
    batches = [[items[i] for i in g[k : k + batch_size]] for g in groups for k in range(0, len(g), batch_size)]
    records: list[GenerationRecord] = []
    with progress() as bar:
        task = bar.add_task(f"generating at layer {layer}", total=len(batches))
        for batch in batches:
            with timed(timings, "encode"):
                rendered = [worker.image(it.image) if it.image is not None else None for it in batch]
                with_image = [i for i, r in enumerate(rendered) if r is not None]
                entries = worker.encode(adapter, [rendered[i][0] for i in with_image], [rendered[i][1] for i in with_image])
                encoded: list[Any] = [None] * len(batch)
                for i, entry in zip(with_image, entries, strict=True):
                    encoded[i] = entry
            prompts = [adapter.render(it.text, it.image is not None) for it in batch]
            with timed(timings, "generate"):
                outs = adapter.generate(
                    prompts, [r[0] if r else None for r in rendered], encoded, layer, settings
                )
            for it, prompt, r, out in zip(batch, prompts, rendered, outs, strict=True):
                records.append(
                    GenerationRecord(
                        id=it.id, attack=attack_name, category=it.category, harmful=it.harmful,
                        behavior=it.behavior or it.text, prompt=prompt,
                        image={"spec": it.image.to_dict(), "sha256": r[1]} if r else None,
                        layer=layer, response=out.text, n_new_tokens=out.n_new_tokens, target=it.target,
                        context=it.context,
                    )
                )
            bar.advance(task)
    position = {i: k for k, i in enumerate(order)}
    return [records[position[i]] for i in range(len(items))]


def build_metrics(
    cfg: DictConfig, adapter: FamilyAdapter, layer: int, records: list[GenerationRecord],
    judges: list[Judge], scorer_names: list[str], timings: dict[str, float], attack_set: AttackSet | None = None,
    attack_cfg: DictConfig | None = None,
) -> dict[str, Any]:
    attack_cfg = attack_cfg if attack_cfg is not None else cfg.attack
    device = adapter.device
    judge_names = [j.name for j in judges]
    hours = timings["total"] / 3600
    new_tokens = sum(r.n_new_tokens for r in records)
    return {
        "status": "complete",
        "task": "eval",
        "model": cfg.model.name,
        "family": cfg.model.family,
        "layer": layer,
        "layer_requested": cfg.layer,
        "default_layer": adapter.default_layer,
        "num_layers": adapter.num_layers,
        "attack": attack_cfg.name,
        "attack_source": attack_set.source if attack_set else None,
        "attack_rows_skipped": attack_set.skipped if attack_set else 0,  # bad rows dropped (attack.on_bad_row=skip)
        "unlearn": (cfg.get("unlearn") or {}).get("name", "none"),
        "n": len(records),
        "n_harmful": sum(r.harmful for r in records),
        "n_benign": sum(not r.harmful for r in records),
        **judging_metrics(records, judge_names, scorer_names, judges),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "device": environment.device_description(device),
        "device_hours": hours,
        "gpu_hours": hours if device.type == "cuda" else 0.0,
        "new_tokens": new_tokens,
        "tokens_per_s": new_tokens / timings["generate"] if timings.get("generate") else None,
        "quant": str(cfg.model.get("quant", "none")),
        "model_memory_bytes": int(adapter.model.get_memory_footprint()),  # parameters + buffers as loaded
        **environment.peak_memory(device),
        "seed": int(cfg.seed),
        "versions": environment.versions(),
        "git_commit": environment.git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def _log_result(m: dict[str, Any]) -> None:
    """One log line: ASR per judge, benign refusal, degenerate rate, time."""
    parts = [
        f"{j}: ASR {v['value']:.2f} [{v['low']:.2f}, {v['high']:.2f}]" + (f" ({v['n_invalid']} invalid)" if v.get("n_invalid") else "")
        for j, v in m["asr"].items()
        if v["value"] is not None
    ]
    parts += [f"{j}: benign refusal {v['value']:.2f}" for j, v in m["refusal_rate_benign"].items() if v["value"] is not None]
    degenerate = (m.get("degenerate") or {}).get("harmful", {}).get("value")
    if degenerate:
        parts.append(f"degenerate {degenerate:.2f}")
    log.info("layer %d · %s · %.1fs", m["layer"], " · ".join(parts) or "no judged items", m["timings_s"]["total"])


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - t
