"""task=eval: load model → build attack set → generate at `layer` → judges + toxicity → records.

Resumable (docs/sweeps.md): a job already complete with the same job key is skipped; a killed one
keeps the whole batches it appended to `generations.jsonl`. `layers=[...]` runs several layers in
one job (one model load), each into its own `layer_<L>/` folder, a job record like any other.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from vlmsafety import environment, jobs, layer_batching, layer_budget
from vlmsafety.attacks import AttackItem, AttackSet, load_attack_set
from vlmsafety.errors import VlmSafetyError
from vlmsafety.judges import Judge
from vlmsafety.layers import resolve_layer
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings
from vlmsafety.prompt_fit import fit_to_model
from vlmsafety.records import GENERATIONS, METRICS, GenerationRecord, write_json_atomic, write_jsonl_atomic
from vlmsafety.report import write_summary
from vlmsafety.scoring import apply_judges, apply_scorers, covering, judging_metrics
from vlmsafety.tasks import register_task
from vlmsafety.ui import DETAIL, progress
from vlmsafety.worker import Worker, get_worker

log = logging.getLogger(__name__)


@register_task("eval", job_record=True)
def run_eval(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    if cfg.get("layers") is not None:
        return run_layers(cfg, out_dir)
    return run_job(cfg, out_dir)


def run_layers(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """`layers=[...]`: one job per listed layer in `out_dir/layer_<L>/`, failures isolated per layer.

    Outside a sweep, `out_dir` then gets the summary files of its layers, as a sweep folder does."""
    layers = cfg.layers
    if not isinstance(layers, ListConfig) or not len(layers):
        raise VlmSafetyError(f"layers={layers!r} must be a non-empty list, e.g. layers='[0,1,2]' (quote it in a shell)")
    if cfg.get("layer") is not None:
        raise VlmSafetyError(f"set either layer={cfg.layer} or layers=[...], not both")
    results: dict[str, Any] = {}
    failed: list[str] = []
    subs = []
    for value in layers:
        sub = copy.deepcopy(cfg)
        with open_dict(sub):
            sub.layer = value
            sub.layers = None
        subs.append((sub, out_dir / f"layer_{value}"))
    with layer_batching.planned(subs):  # the layers decode their batches together (cross-layer decoding)
        for (sub, sub_dir), value in zip(subs, layers, strict=True):
            sub_dir.mkdir(parents=True, exist_ok=True)
            try:
                results[str(value)] = run_job(sub, sub_dir)
            except Exception as e:
                line = jobs.mark_failed(sub_dir, sub, e)
                log.error("layer %s failed: %s", value, line)
                failed.append(f"layer {value}: {line}")
                if cfg.get("fail_fast") or cfg.get("debug"):
                    raise jobs.JobsFailed(f"layer {value} failed (fail_fast): {line}") from e
    if not jobs.in_sweep():  # a sweep's summary covers these folders; a single run summarises its own
        write_summary(out_dir, show=True)
    if failed:
        raise jobs.JobsFailed(f"{len(failed)} of {len(layers)} layers failed; " + "; ".join(failed))
    return results


def run_job(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """One eval job into `out_dir`: skipped when complete with the same key, resumed when partly written."""
    key = jobs.job_key(cfg)
    resume = bool(cfg.get("resume", True))
    if resume and (done := jobs.completed(out_dir, key)) is not None:
        log.info("skipping %s: already complete with job key %s (resume=true)", out_dir, key, extra=DETAIL)
        return done
    previous = jobs.read_metrics(out_dir)
    resumable = resume and previous is not None and previous.get("job_key") == key
    if not resumable:
        why = "resume=false" if not resume else "this config's job key is not the one recorded there"
        jobs.set_aside(out_dir, previous, why)
    jobs.mark_running(out_dir, cfg, key)
    started_at = jobs.now()

    worker = get_worker()
    worker.configure(cfg)
    before = dataclasses.replace(worker.stats)
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
        cfg.attack.name, n_harmful, len(items) - n_harmful, environment.device_description(device), extra=DETAIL,
    )

    # judges and scorers load before generating, so that a missing key or checkpoint fails fast
    with timed(timings, "judge_load"):
        judges = worker.judges(cfg.get("judge"))
        scorers = worker.scorers(cfg.get("toxicity"))

    def job_facts() -> dict[str, Any]:
        # what this job cost the process's worker: in a one-process sweep only the first job loads the
        # model and each image is encoded once for all layers
        cost = {
            "loaded_model": worker.stats.models_loaded > before.models_loaded,
            "images_encoded": worker.stats.images_encoded - before.images_encoded,
        }
        return {"job_key": key, "started_at": started_at, "finished_at": jobs.now(), "worker": cost}

    return evaluate(
        cfg, worker, adapter, cfg.attack, attack_set, layer, judges, scorers, out_dir, timings, started,
        partial=out_dir / GENERATIONS, extra=job_facts, cross_layers=layer_budget.cross_layer_plan(cfg, adapter, layer),
    )



def evaluate(
    cfg: DictConfig, worker: Worker, adapter: FamilyAdapter, attack_cfg: DictConfig, attack_set: AttackSet,
    layer: int, judges: list[Judge], scorers: list, out_dir: Path, timings: dict[str, float], started: float,
    partial: Path | None = None, extra: Callable[[], dict[str, Any]] | dict[str, Any] | None = None,
    cross_layers: list[int] | None = None,
    reuse_image_batches: bool = False,
) -> dict[str, Any]:
    """Generate at `layer` for every item, judge, score, and write generations.jsonl and metrics.json.

    The part of `task=eval` after loading; `task=unlearn` calls it for each phase, attack set and
    layer. `partial`: where finished batches are appended (and resumed from); `extra` (or a function
    returning it, called at the end) is merged into metrics.json; `started`: the job's start;
    `cross_layers`: layers whose image batches are decoded together with this job's (cross-layer decoding);
    `reuse_image_batches`: serve an image batch the worker already decoded at this layer (the same
    batch, seed and weights; the "before" evaluation of every unlearn job of a sweep).
    """
    attack_set = fit_to_model(attack_set, adapter, attack_cfg, int(cfg.max_new_tokens))  # too long / markup
    generated = generate_records(
        cfg, worker, adapter, attack_set.items, layer, timings, partial, attack_name=str(attack_cfg.name),
        cross_layers=cross_layers,
        reuse_image_batches=reuse_image_batches,
    )
    records = generated.records
    with timed(timings, "judge"):
        judges = covering(judges, records)
        apply_judges(records, judges)
    with timed(timings, "toxicity"):
        apply_scorers(records, scorers)

    write_jsonl_atomic(out_dir / GENERATIONS, records)
    timings["total"] = time.perf_counter() - started
    metrics = build_metrics(
        cfg, adapter, layer, records, judges, [s.name for s in scorers], timings, attack_set, generated, attack_cfg,
    )
    metrics.update((extra() if callable(extra) else extra) or {})
    write_json_atomic(out_dir / METRICS, metrics)
    _log_result(metrics)
    return metrics


class Generated(NamedTuple):
    records: list[GenerationRecord]  # in item order
    resumed: list[GenerationRecord]  # kept from a killed run's appended batches (not decoded now)
    reused: list[GenerationRecord]  # answers the worker had decoded for another layer (text) or job (same batch)
    shared: list[GenerationRecord] = []  # image answers an earlier job decoded in a batch shared across layers
    tokens_for_other_layers: int = 0  # new tokens this job decoded for later jobs' layers


def generate_records(
    cfg: DictConfig, worker: Worker, adapter: FamilyAdapter, items: list[AttackItem], layer: int, timings: dict,
    partial: Path | None = None, attack_name: str | None = None, cross_layers: list[int] | None = None,
    reuse_image_batches: bool = False,
) -> Generated:
    """One record per item, generated at `layer` (batched; text-only and image prompts apart).

    Each finished batch is appended to `partial` (when given); batches and their seeds depend only
    on the config, so a resumed job's records equal an uninterrupted one's. Text-only batches do not
    depend on the layer: the worker decodes each once per process (`Worker.text_generations`).
    """
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
    prompts = {id(it): adapter.render(it.text, it.image is not None) for it in items}
    ends = [sum(len(b) for b in batches[: n + 1]) for n in range(len(batches))]  # rows done after each batch
    records: list[GenerationRecord] = []
    if partial is not None:
        expected = [(items[i].id, layer, prompts[id(items[i])]) for i in order]
        records = jobs.resume_records(partial, expected, ends)
    done = ends.index(len(records)) + 1 if records else 0
    if done:
        log.info("resuming after batch %d/%d (%d records kept from the killed run)", done, len(batches), len(records))
    resumed = list(records)
    reused: list[GenerationRecord] = []
    shared: list[GenerationRecord] = []
    other_tokens = 0
    lb_settings = layer_batching.Settings.from_config(cfg)
    with progress() as bar:
        task = bar.add_task(f"generating at layer {layer}", total=len(batches), completed=done)
        for b in range(done, len(batches)):
            batch = batches[b]
            with timed(timings, "encode"):
                rendered, encoded = worker.encode_batch(adapter, [it.image for it in batch])
                with_image = any(r is not None for r in rendered)
            batch_prompts = [prompts[id(it)] for it in batch]
            seed = _batch_seed(int(cfg.seed), b)
            decode = functools.partial(
                _decode, adapter, batch_prompts, [r[0] if r else None for r in rendered], encoded, layer, settings, seed
            )
            with timed(timings, "generate"):
                from_shared = False
                if with_image and cross_layers:
                    outs, from_shared, tokens = layer_budget.decode_across_layers(
                        worker, adapter, batch_prompts, rendered, encoded, layer, cross_layers, settings, seed, lb_settings,
                    )
                    other_tokens += tokens
                    from_cache = False
                elif with_image and not reuse_image_batches:
                    outs, from_cache = decode(), False
                else:  # an image batch depends on the layer and the pixels: both join the key
                    images = (layer, tuple(r[1] if r else None for r in rendered)) if with_image else ()
                    outs, from_cache = worker.text_generations(adapter, batch_prompts, settings, seed, decode, images)
            fresh = [
                GenerationRecord(
                    id=it.id, attack=attack_name, category=it.category, harmful=it.harmful,
                    behavior=it.behavior or it.text, prompt=prompts[id(it)],
                    image={"spec": it.image.to_dict(), "sha256": r[1]} if r else None,
                    layer=layer, response=out.text, n_new_tokens=out.n_new_tokens, target=it.target,
                    context=it.context,
                )
                for it, r, out in zip(batch, rendered, outs, strict=True)
            ]
            if partial is not None:
                jobs.append_records(partial, fresh)
            records += fresh
            if from_cache:
                reused += fresh
            if from_shared:
                shared += fresh
            bar.advance(task)
    position = {i: k for k, i in enumerate(order)}
    return Generated([records[position[i]] for i in range(len(items))], resumed, reused, shared, other_tokens)



def _decode(
    adapter: FamilyAdapter, prompts: list[str], images: list[Any], encoded: list[Any], layer: int,
    settings: GenerationSettings, seed: int,
) -> list[Generation]:
    torch.manual_seed(seed)  # sampling draws depend on the batch alone (resume gives the same records)
    return adapter.generate(prompts, images, encoded, layer, settings)


def _batch_seed(seed: int, batch: int) -> int:
    """The RNG seed of one batch: a function of (seed, batch index) only, so a resumed job samples alike."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch}".encode()).digest()[:8], "big") >> 1


def build_metrics(
    cfg: DictConfig, adapter: FamilyAdapter, layer: int, records: list[GenerationRecord],
    judges: list[Judge], scorer_names: list[str], timings: dict[str, float], attack_set: AttackSet | None = None,
    generated: Generated | None = None, attack_cfg: DictConfig | None = None,
) -> dict[str, Any]:
    """metrics.json of a complete job; `generated` says which records this job did not decode itself."""
    attack_cfg = attack_cfg if attack_cfg is not None else cfg.attack
    judge_names = [j.name for j in judges]
    device = adapter.device
    hours = timings["total"] / 3600
    new_tokens = sum(r.n_new_tokens for r in records)
    # tokens this job decoded (records kept from a killed run or reused from another layer cost no decoding)
    resumed, reused, shared = (generated.resumed, generated.reused, generated.shared) if generated else ([], [], [])
    others = generated.tokens_for_other_layers if generated else 0
    fresh_tokens = new_tokens - sum(r.n_new_tokens for r in resumed + reused + shared) + others
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
        "prompts_too_long": attack_set.too_long if attack_set else 0,  # of those, too long for the model's context
        "prompts_neutralised": attack_set.neutralised if attack_set else 0,  # markup-like text (<image>) made text
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
        "resumed_records": len(resumed),
        "reused_text_records": sum(r.image is None for r in reused),  # text-only answers decoded once for every layer
        "reused_image_records": sum(r.image is not None for r in reused),  # the same image batch at the same layer
        # cross-layer decoding: records an earlier job decoded in batches shared across layers, and the new
        # tokens this job decoded for later jobs (tokens_per_s counts every token this job decoded)
        "shared_layer_records": len(shared),
        "tokens_for_other_layers": others,
        "tokens_per_s": fresh_tokens / timings["generate"] if timings.get("generate") else None,
        "quant": str(cfg.model.get("quant", "none")),
        "chat_date": adapter.template_vars().get("date_string"),  # the pinned "Today Date" (null: template has none)
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
        f"{j}: ASR {v['value']:.2f}" + (f" [{v['low']:.2f}, {v['high']:.2f}]" if v.get("low") is not None else "")
        + (f" ({v['n_invalid']} invalid)" if v.get("n_invalid") else "")
        for j, v in m["asr"].items()
        if v["value"] is not None
    ]
    parts += [f"{j}: benign refusal {v['value']:.2f}" for j, v in m["refusal_rate_benign"].items() if v["value"] is not None]
    degenerate = (m.get("degenerate") or {}).get("harmful", {}).get("value")
    if degenerate:
        parts.append(f"degenerate {degenerate:.2f}")
    # run.log only: the console gets one line per job (vlmsafety.job_lines), not one per evaluation
    log.info("layer %d · %s · %.1fs", m["layer"], " · ".join(parts) or "no judged items", m["timings_s"]["total"], extra=DETAIL)


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - t
