"""task=unlearn: load model → evaluate (before) → train per `unlearn` recipe → save → evaluate (after).

One job, one process (DESIGN.md §1). The evaluations are the eval task's own (`tasks.eval.evaluate`),
run for every attack set of `unlearn.data.eval_attacks` at every layer of `unlearn.eval.layers`, into
`eval/<before|after>/<attack>/layer_<L>/`. The job's metrics.json holds the training record, the cost,
device hours per phase and the before / after table (`unlearn.results`). When the job ends the base
model is put back exactly (LoRA adapters unloaded) or dropped from the worker's cache, so the next
job of a sweep never starts from an unlearned model.

Its folder follows the eval jobs' record rules (docs/sweeps.md): metrics.json says `running` from the start
and carries the job key; a complete job with the same key is skipped; whatever another job left there is
moved to `superseded/<its job key>/` before this one writes (`UNLEARN_OUTPUTS`); a failure is recorded.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from vlmsafety import environment, jobs
from vlmsafety.attacks import AttackSet, load_attack_set
from vlmsafety.errors import VlmSafetyError, check_options
from vlmsafety.layers import resolve_layer
from vlmsafety.models.base import FamilyAdapter
from vlmsafety.records import METRICS, write_json_atomic
from vlmsafety.tasks import register_task
from vlmsafety.tasks.eval import evaluate, timed
from vlmsafety.ui import DETAIL
from vlmsafety.unlearn.cost import cost_summary, model_sizes
from vlmsafety.unlearn.data import build_data
from vlmsafety.unlearn.methods import UnlearnMethod, get_method
from vlmsafety.unlearn.model_setup import Trainable, setup
from vlmsafety.unlearn.results import eval_dir, job_results
from vlmsafety.unlearn.trainer import TRAIN_LOG, train
from vlmsafety.worker import Worker, get_worker

log = logging.getLogger(__name__)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# what a job writes into its folder besides Hydra's files: moved aside together (jobs.set_aside), never
# overwritten, when a job of another config runs there
UNLEARN_OUTPUTS = (METRICS, TRAIN_LOG, "adapter", "model", "merged", "eval")


@register_task("unlearn", job_record=True, outputs=UNLEARN_OUTPUTS)
def run_unlearn(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    u = cfg.get("unlearn") or {}
    if not u.get("method"):
        raise VlmSafetyError(
            "task=unlearn needs a recipe: unlearn=textual (or multimodal, textual_ga, textual_graddiff, textual_npo, "
            "layerwise_sft, layerwise_dpo)"
        )
    worker = get_worker()
    worker.configure(cfg)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # everything that reads files or configs first: a bad path should not cost a model load
    method = build_method(u)
    data = build_data(u.data, seed=int(cfg.seed))
    attacks = [(a, load_attack_set(a, limit=cfg.limit, seed=cfg.seed)) for a in eval_attacks(cfg)]

    # the job's folder: a complete job with this key is kept (resume=true); anything else found there is moved
    # aside whole (training cannot resume from a kill, so an unfinished job of this key starts over)
    key = jobs.job_key(cfg)
    resume = bool(cfg.get("resume", True))
    if resume and (done := jobs.completed(out_dir, key)) is not None:
        log.info("skipping %s: already complete with job key %s (resume=true)", out_dir, key, extra=DETAIL)
        return done
    why = "resume=false" if not resume else "no complete job with this config's job key is recorded there"
    jobs.set_aside(out_dir, jobs.read_metrics(out_dir), why, UNLEARN_OUTPUTS)
    jobs.mark_running(out_dir, cfg, key)
    started_at = jobs.now()
    log.info(
        "unlearn %s: %d harmful requests (%d to forget), %d normal + %d held out; images: %s",
        u.name, len(data.helpful), len(data.forget_examples), len(data.normal), len(data.heldout), u.data.get("image", "none"),
        extra=DETAIL,
    )

    with timed(timings, "load"):
        adapter, _ = worker.model(cfg.model, cfg.device)
    environment.reset_peak_memory(adapter.device)
    layers = eval_layers(u.get("eval", {}).get("layers", "default"), cfg, adapter)
    judges, scorers = worker.judges(cfg.get("judge")), worker.scorers(cfg.get("toxicity"))
    run_evals = _eval_runner(cfg, worker, adapter, attacks, layers, judges, scorers, out_dir, timings)
    if u.get("eval", {}).get("before", True):
        with timed(timings, "eval_before"):
            run_evals("before")

    sizes = model_sizes(adapter, 0)  # before adapters are added
    # the adapters' initial weights come from torch's global generator: seed it here, or they would
    # depend on what ran before in the process (which batches the worker served from its caches)
    torch.manual_seed(int(cfg.seed))
    with trained_in_place(worker, adapter, u.train, method) as trainable:
        with timed(timings, "train"):
            result = train(trainable, method, data, u.train, out_dir, lambda spec: worker.image(spec)[0], int(cfg.seed),
                           encode=lambda specs, images: worker.encode(adapter, images, [worker.image(s)[1] for s in specs]))
        trainable.model.eval()
        adapter.weights_tag = f"unlearned-{uuid.uuid4().hex}"  # fixed from here: text-only answers reused across layers
        with timed(timings, "eval_after"):
            run_evals("after")
        if u.train.get("merge"):
            with timed(timings, "save_merged"):
                result.saved.append(str(trainable.save_merged(out_dir)))

    timings["total"] = time.perf_counter() - started
    on_gpu = adapter.device.type == "cuda"
    nll = {"before": result.before, "after": result.after}
    metrics = {
        "status": jobs.COMPLETE,
        "job_key": key,
        "started_at": started_at,
        "finished_at": jobs.now(),
        "task": "unlearn",
        "model": cfg.model.name,
        "family": cfg.model.family,
        "unlearn": str(u.name),
        "method": str(u.method),
        "layer": layers[0],
        "default_layer": adapter.default_layer,
        "attack": ",".join(str(a.name) for a, _ in attacks),
        "data": {**data.sources, "n_requests": len(data.helpful), "n_forget": len(data.forget_examples),
                 "n_normal": len(data.normal), "n_heldout": len(data.heldout),
                 "image": _plain(u.data.get("image", "none")), "normal_image": _plain(u.data.get("normal_image", "none"))},
        "train": {"mode": trainable.mode, "steps": result.steps, "stopped": result.stopped,
                  "forget_nll_cap": result.forget_nll_cap, "saved": result.saved, "log": "train_log.jsonl",
                  "train_projector": bool(u.train.get("train_projector")), "layers": result.layers},
        "nll": nll,
        "cost": cost_summary(
            replace(sizes, trainable=trainable.n_trainable), result.meter, "full" if trainable.mode == "full" else "lora",
            bool(u.train.get("gradient_checkpointing")), result.seconds, on_gpu,
        ),
        "results": job_results(out_dir, nll),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "device_hours": {k: v / 3600 for k, v in timings.items()},
        "gpu_hours": {k: (v / 3600 if on_gpu else 0.0) for k, v in timings.items()},
        "device": environment.device_description(adapter.device),
        "quant": str(cfg.model.get("quant", "none")),
        "chat_date": adapter.template_vars().get("date_string"),  # the pinned "Today Date" (null: template has none)
        **environment.peak_memory(adapter.device),
        "seed": int(cfg.seed),
        "versions": environment.versions(),
        "git_commit": environment.git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json_atomic(out_dir / METRICS, metrics)
    _log_results(metrics)
    return metrics


def _plain(value: Any) -> Any:
    """A config value as JSON takes it: a list of image policies stays a list, anything else a string."""
    return [str(v) for v in value] if isinstance(value, (list, ListConfig)) else str(value)


def build_method(u: DictConfig) -> UnlearnMethod:
    """The recipe's method with its `unlearn.loss` options (checked by name), and its image requirement checked."""
    method_cls = get_method(str(u.method))
    options = OmegaConf.to_container(u.loss, resolve=True) if u.get("loss") else {}
    check_options(f"unlearn.loss (method {u.method})", method_cls, options)
    method = method_cls(**options)
    if method.needs_images and _plain(u.data.get("image", "none")) in ("none", ["none"]):
        raise VlmSafetyError(f"unlearn.method={u.method} trains with images; set unlearn.data.image to figstep, benign or dataset")
    return method


@contextmanager
def trained_in_place(worker: Worker, adapter: FamilyAdapter, train_cfg: DictConfig, method: UnlearnMethod) -> Iterator[Trainable]:
    """Set `adapter`'s model up for training; on leaving, put the base model back exactly (adapters
    unloaded) or, where that cannot be done, drop it from the worker so the next job reloads it clean."""
    trainable: Trainable | None = None
    adapter.modified = True  # until restore() proves otherwise, no later job may get this model
    try:
        trainable = setup(adapter, train_cfg, method.needs_reference)
        yield trainable
    finally:
        adapter.weights_tag = None
        if trainable is not None and trainable.restore():
            adapter.modified = False
        else:
            worker.release_model(adapter.cache_key)
            log.info("the trained weights cannot be undone in place: the next job reloads %s", adapter.name)


def _eval_runner(
    cfg: DictConfig, worker: Worker, adapter: FamilyAdapter, attacks: list[tuple[DictConfig, AttackSet]],
    layers: list[int], judges: list, scorers: list, out_dir: Path, timings: dict[str, float],
) -> Any:
    """phase → run the eval task's `evaluate` for every attack set and layer into eval/<phase>/..."""

    def run(phase: str) -> None:
        for attack_cfg, attack_set in attacks:
            # items kept out of training (the organism's held-out pairs): results report them apart
            heldout = [it.id for it in attack_set.items if (it.meta or {}).get("heldout")]
            for layer in layers:
                folder = eval_dir(out_dir, phase, str(attack_cfg.name), layer)
                folder.mkdir(parents=True, exist_ok=True)
                evaluate(
                    cfg, worker, adapter, attack_cfg, attack_set, layer, judges, scorers, folder, {},
                    time.perf_counter(), extra={"phase": phase, "unlearn": str(cfg.unlearn.name), "heldout_ids": heldout},
                    reuse_image_batches=phase == "before",  # the same base model in every job of a sweep
                )

    return run


def eval_attacks(cfg: DictConfig) -> list[DictConfig]:
    """The attack sets to evaluate: `unlearn.data.eval_attacks` (preset names) or, if null, the job's `attack`."""
    names = cfg.unlearn.data.get("eval_attacks")
    if not names:
        return [cfg.attack]
    if not isinstance(names, (list, ListConfig)):
        raise VlmSafetyError(f"unlearn.data.eval_attacks must be a list of attack presets, got {names!r}")
    return [attack_preset(str(name), cfg) for name in names]


def attack_preset(name: str, cfg: DictConfig) -> DictConfig:
    """The `attack` node of conf/attack/<name>.yaml, composed by Hydra with the job's data_root."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    overrides = [f"attack={name}", f"data_root={cfg.get('data_root', 'data')}"]
    try:
        if GlobalHydra.instance().is_initialized():  # inside run.py: Hydra's own search path
            composed = compose(config_name="config", overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                composed = compose(config_name="config", overrides=overrides)
    except MissingConfigException:
        options = sorted(p.stem for p in (CONF_DIR / "attack").glob("*.yaml"))
        raise VlmSafetyError(f"unlearn.data.eval_attacks: unknown attack {name!r}; valid: {', '.join(options)}") from None
    return OmegaConf.create(OmegaConf.to_container(composed.attack, resolve=True))


def eval_layers(value: Any, cfg: DictConfig, adapter: FamilyAdapter) -> list[int]:
    """`default` = the job's `layer` (null: the model's trained default), `all` = 0..N, or a list of layers."""
    resolve = lambda layer: resolve_layer(layer, adapter.num_layers, adapter.default_layer, cfg.model.name)  # noqa: E731
    if value is None or str(value) == "default":
        return [resolve(cfg.get("layer"))]
    if str(value) == "all":
        return list(range(adapter.num_layers + 1))
    if isinstance(value, (list, ListConfig)):
        return list(dict.fromkeys(resolve(v) for v in value))
    raise VlmSafetyError(f"unlearn.eval.layers={value!r} is not valid; use default, all or a list such as [0, 12, 23]")


def _log_results(m: dict[str, Any]) -> None:
    for row in m["results"]:
        parts = []
        for part in ("text", "image"):
            b, a = row.get("before", {}).get(part), row.get("after", {}).get(part)
            if a is None:
                continue
            for judge, value in a["asr"].items():
                before = f"{b['asr'][judge]:.2f}→" if b and b["asr"].get(judge) is not None else ""
                parts.append(f"{part} ASR {judge} {before}{value:.2f}" if value is not None else f"{part} ASR —")
        flags = f" · COLLAPSE: {'; '.join(row['collapse'])}" if row["collapse"] else ""
        log.info("%s layer %d · %s%s", row["attack"], row["layer"], " · ".join(parts) or "no judged items", flags, extra=DETAIL)
