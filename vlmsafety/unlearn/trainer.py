"""The unlearning loop, top to bottom: setup → measure → loop → measure → checkpoint.

Reads the `unlearn.train` node. Each optimisation step takes `grad_accum` micro-batches of
`batch_size` harmful requests (their forget and helpful examples together) and `batch_size` normal
examples, sums the method's loss over them, clips the gradient norm and steps AdamW. Every step's
loss terms go to the progress bar and, one JSON object per line, to `train_log.jsonl`.
Safety rails: the forget NLL a loss ascends is capped per example (`forget_nll_cap`), and with
`early_stop` the loop ends at the first step whose forget NLL has reached that cap.
Layer-wise recipes (`samples_layers`): every image example of a step gets a vision layer drawn from
`unlearn.train.layers` (seeded apart from the data order, `unlearn/layers.py`); the layers drawn are
logged per step (`layers_harmful`, `layers_normal`) and counted in the result.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vlmsafety.errors import VlmSafetyError
from vlmsafety.ui import DETAIL, progress
from vlmsafety.unlearn.batches import ImageEncoder, ImageLoader, Meter
from vlmsafety.unlearn.data import Example, UnlearnData
from vlmsafety.unlearn.layers import LayerDistribution, layer_distribution
from vlmsafety.unlearn.methods import LossContext, TrainBatch, UnlearnMethod
from vlmsafety.unlearn.model_setup import Trainable

log = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"


@dataclass
class TrainResult:
    steps: int  # optimizer steps taken
    stopped: str  # why the loop ended
    before: dict[str, float]  # `measure` before the first step
    after: dict[str, float]  # `measure` after the last step
    meter: Meter  # work done by the training passes (measurements not included)
    seconds: float  # wall time of the loop
    saved: list[str] = field(default_factory=list)
    forget_nll_cap: float = math.inf
    layers: dict[str, Any] | None = None  # layer-wise recipes: the distribution and how often each layer was drawn


class Sampler:
    """Seeded passes over the harmful requests (forget + helpful of the same request together) and,
    independently, over the normal examples; each pass is a new permutation. With `layers`, each
    image example gets a vision layer drawn from it (one per harmful request, shared by its forget
    and helpful examples), by a generator of its own, so the data order does not depend on it."""

    def __init__(self, data: UnlearnData, batch_size: int, seed: int, layers: LayerDistribution | None = None):
        self.data, self.batch_size = data, batch_size
        self.rng = random.Random(seed)
        self.layers = layers
        self.layer_rng = random.Random(f"layers:{seed}")
        self._pairs: list[int] = []
        self._normal: list[int] = []

    def _take(self, pool: list[int], n: int, size: int) -> list[int]:
        out = []
        while len(out) < size:
            if not pool:
                pool.extend(self.rng.sample(range(n), n))
            out.append(pool.pop())
        return out

    def next(self) -> TrainBatch:
        pairs = self._take(self._pairs, len(self.data.helpful), min(self.batch_size, len(self.data.helpful)))
        normal = self._take(self._normal, len(self.data.normal), min(self.batch_size, len(self.data.normal)))
        forget = [self.data.forget[i] for i in pairs]
        helpful = [self.data.helpful[i] for i in pairs]
        normals = [self.data.normal[i] for i in normal]
        if self.layers is not None:
            for k, ex in enumerate(helpful):
                if ex.image is not None:
                    layer = self.layers.sample(self.layer_rng, 1)[0]
                    helpful[k] = replace(ex, layer=layer)
                    forget[k] = replace(forget[k], layer=layer) if forget[k] is not None else None
            normals = [replace(ex, layer=self.layers.sample(self.layer_rng, 1)[0]) if ex.image is not None else ex
                       for ex in normals]
        return TrainBatch(forget=[f for f in forget if f is not None], helpful=helpful, normal=normals)


def sampled_layers(batch: TrainBatch) -> dict[str, list[int]]:
    """The layers a batch's harmful requests (one per request) and normal image examples were given."""
    return {
        "layers_harmful": [e.layer for e in batch.helpful if e.layer is not None],
        "layers_normal": [e.layer for e in batch.normal if e.layer is not None],
    }


def train(
    trainable: Trainable, method: UnlearnMethod, data: UnlearnData, cfg: Any, out_dir: Path,
    load_image: ImageLoader, seed: int = 0, encode: ImageEncoder | None = None,
) -> TrainResult:
    """Run the loop on `trainable` and save the result under `out_dir` (see the module docstring).

    encode: how images at sampled layers are encoded (a job passes the worker's cache: the same
    entries its evaluation reads); default the adapter's own `encode_images`.
    """
    # --- setup --------------------------------------------------------------------------------
    adapter = trainable.adapter
    torch.manual_seed(seed)
    cap = forget_nll_cap(cfg.get("forget_nll_cap", "auto"), adapter.model.config.get_text_config().vocab_size)
    meter = Meter()
    reference = trainable.reference() if trainable.has_reference else None  # LoRA: always (adapters off)
    ctx = LossContext(adapter, trainable.current, reference, meter, load_image, cap, encode)
    measure_ctx = LossContext(adapter, trainable.current, ctx.reference, Meter(), load_image, cap, encode)
    layers = (
        layer_distribution(cfg.get("layers"), adapter.num_layers, adapter.default_layer, adapter.name)
        if method.samples_layers else None
    )
    if layers is not None:
        log.info("vision layers sampled per image example: %s", layers.describe(), extra=DETAIL)
    drawn: Counter[int] = Counter()
    optimizer = torch.optim.AdamW(
        trainable.params, lr=float(cfg.lr), weight_decay=float(cfg.get("weight_decay", 0.0)), betas=(0.9, 0.999)
    )
    batch_size, accum = int(cfg.batch_size), int(cfg.get("grad_accum", 1))
    steps = total_steps(cfg, len(data.helpful), batch_size * accum)
    sampler = Sampler(data, batch_size, seed, layers)
    device = adapter.device
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.get("bf16", True) else nullcontext()
    )
    max_norm = float(cfg.get("max_grad_norm", 1.0))
    eval_batch = int(cfg.get("eval_batch_size", 16))

    before = measure(trainable, measure_ctx, data, eval_batch)
    log.info("before: %s", _fmt(before), extra=DETAIL)

    # --- loop ---------------------------------------------------------------------------------
    stopped, step = f"reached {steps} steps", 0
    started = time.perf_counter()
    log_path = out_dir / TRAIN_LOG
    with open(log_path, "w", encoding="utf-8") as train_log, progress() as bar:
        task = bar.add_task(f"unlearning ({method.name})", total=steps)
        trainable.model.train()
        for step in range(1, steps + 1):
            optimizer.zero_grad(set_to_none=True)
            terms: dict[str, float] = {}
            total = 0.0
            step_layers: dict[str, list[int]] = {"layers_harmful": [], "layers_normal": []}
            for _ in range(accum):
                batch = sampler.next()
                for key, values in sampled_layers(batch).items():
                    step_layers[key] += values
                with autocast:
                    loss, parts = method.loss(ctx, batch)
                if not torch.isfinite(loss):
                    raise VlmSafetyError(
                        f"unlearning loss is {float(loss)} at step {step} ({_fmt(parts)}); lower unlearn.train.lr"
                    )
                (loss / accum).backward()
                total += loss.item() / accum
                for k, v in parts.items():
                    terms[k] = terms.get(k, 0.0) + v / accum
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable.params, max_norm)
            optimizer.step()
            row = {
                "step": step, "loss": total, **terms, "grad_norm": float(grad_norm), "lr": float(cfg.lr),
                "tokens": sum(meter.tokens.values()), "images": meter.images,
                "elapsed_s": round(time.perf_counter() - started, 3),
            }
            if layers is not None:
                row.update(step_layers)
                drawn.update(step_layers["layers_harmful"] + step_layers["layers_normal"])
            train_log.write(json.dumps(row) + "\n")
            train_log.flush()
            forget = f" forget NLL {terms['forget_nll']:.2f}" if "forget_nll" in terms else ""
            bar.update(task, advance=1, description=f"unlearning ({method.name}) loss {total:.3f}{forget}")
            if cfg.get("early_stop", True) and terms.get("forget_nll", -math.inf) >= cap:
                stopped = f"forget NLL {terms['forget_nll']:.3f} reached its cap {cap:.3f} at step {step}"
                break
    seconds = time.perf_counter() - started
    log.info("unlearning stopped: %s", stopped, extra=DETAIL)

    after = measure(trainable, measure_ctx, data, eval_batch)
    log.info("after: %s", _fmt(after), extra=DETAIL)

    # --- checkpoint -----------------------------------------------------------------------------
    saved = [str(p) for p in trainable.save(out_dir)]
    layer_record = None
    if layers is not None:
        layer_record = {"distribution": dict(zip(layers.layers, layers.probs, strict=True)),
                        "drawn": {layer: drawn[layer] for layer in sorted(drawn)}}
    return TrainResult(step, stopped, before, after, meter, seconds, saved, cap, layer_record)


@torch.no_grad()
def measure(trainable: Trainable, ctx: LossContext, data: UnlearnData, batch_size: int) -> dict[str, float]:
    """Mean answer NLL of every forget, helpful, training-normal and held-out normal example, and the
    KL to the original model on held-out normal data (text and image examples apart where both exist)."""
    trainable.model.eval()
    out: dict[str, float] = {
        "forget_nll": _mean_nll(ctx, data.forget_examples, batch_size),
        "helpful_nll": _mean_nll(ctx, data.helpful, batch_size),
        "normal_nll": _mean_nll(ctx, data.normal, batch_size),
    }
    for name, examples in (("text", [e for e in data.heldout if e.image is None]), ("image", [e for e in data.heldout if e.image])):
        if examples:
            out[f"heldout_nll_{name}"] = _mean_nll(ctx, examples, batch_size)
            if ctx.reference is not None:
                out[f"heldout_kl_{name}"] = _chunked_mean(ctx.kl, examples, batch_size)
    trainable.model.train()
    return out


def _mean_nll(ctx: LossContext, examples: list[Example], batch_size: int) -> float:
    return _chunked_mean(ctx.nll, examples, batch_size) if examples else float("nan")


def _chunked_mean(fn: Any, examples: list[Example], batch_size: int) -> float:
    values = [fn(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
    return float(torch.cat([v.float().cpu() for v in values]).mean())


def forget_nll_cap(value: Any, vocab_size: int) -> float:
    """The cap in nats per answer token: a number, `auto` = ln(vocabulary size) (a uniform guess), or null = none."""
    if value is None:
        return math.inf
    if str(value) == "auto":
        return math.log(vocab_size)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise VlmSafetyError(f"unlearn.train.forget_nll_cap={value!r} must be a number, auto or null") from None


def total_steps(cfg: Any, n_requests: int, per_step: int) -> int:
    """`steps`, or with `epochs` set, enough steps to see every harmful request `epochs` times."""
    if cfg.get("epochs") is not None:
        return max(1, math.ceil(float(cfg.epochs) * n_requests / per_step))
    steps = int(cfg.get("steps") or 0)
    if steps < 1:
        raise VlmSafetyError(f"unlearn.train.steps={cfg.get('steps')} must be ≥ 1 (or set unlearn.train.epochs)")
    return steps


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())
