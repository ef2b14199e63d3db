"""Batched vs one-prompt-at-a-time generation: new tokens per second at several batch sizes.

In process, on the default model (conf/config.yaml), through the same worker and adapter calls as
task=eval: the same image prompts, greedy, `max_new_tokens` from the config, features precomputed
(the vision encoder is not what is measured here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from vlmsafety.attacks import load_attack_set
from vlmsafety.models.base import GenerationSettings
from vlmsafety.worker import get_worker


@dataclass
class GenerationRun:
    batch_size: int
    prompts: int
    new_tokens: int
    seconds: float  # best of `repeats` passes over all prompts

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds


def _image_prompts(cfg: DictConfig, n_prompts: int) -> tuple[Any, list[str], list[Any], list[Any], GenerationSettings]:
    """The default model's adapter, the attack set's first `n_prompts` image prompts rendered, their images and
    encoder entries (through the worker, as task=eval), and greedy settings with the config's max_new_tokens."""
    worker = get_worker()
    worker.configure(cfg)
    adapter, _ = worker.model(cfg.model, cfg.device)
    items = [it for it in load_attack_set(cfg.attack, limit=None, seed=cfg.seed).items if it.image is not None][:n_prompts]
    rendered = [worker.image(it.image) for it in items]
    images = [r[0] for r in rendered]
    encoded = worker.encode(adapter, images, [r[1] for r in rendered])
    prompts = [adapter.render(it.text, True) for it in items]
    return adapter, prompts, images, encoded, GenerationSettings(max_new_tokens=int(cfg.max_new_tokens))


def tokens_per_second(cfg: DictConfig, batch_sizes: tuple[int, ...], n_prompts: int = 32, repeats: int = 3) -> list[GenerationRun]:
    """Generate the same `n_prompts` image prompts at each batch size; count the tokens each row generated."""
    adapter, prompts, images, encoded, settings = _image_prompts(cfg, n_prompts)
    layer = adapter.default_layer

    def one_pass(bs: int) -> tuple[int, float]:
        t = time.perf_counter()
        tokens = 0
        for k in range(0, len(prompts), bs):
            outs = adapter.generate(prompts[k : k + bs], images[k : k + bs], encoded[k : k + bs], layer, settings)
            tokens += sum(o.n_new_tokens for o in outs)
        return tokens, time.perf_counter() - t

    one_pass(max(batch_sizes))  # warm-up: first calls allocate and fill caches
    # rounds interleave the batch sizes, so that a burst of load from other processes hits them alike
    passes: dict[int, list[tuple[int, float]]] = {bs: [] for bs in batch_sizes}
    for _ in range(repeats):
        for bs in batch_sizes:
            passes[bs].append(one_pass(bs))
    return [GenerationRun(bs, len(prompts), p[0][0], min(s for _, s in p)) for bs, p in passes.items()]


@dataclass
class WidthRun:
    """Decoding the same prompts at every layer: one generate call per layer, or one call for all layers."""

    how: str  # "one call per layer" | "one call, all layers"
    rows_per_call: int
    calls: int
    seconds: float  # best of `repeats` passes
    ops: dict[str, float]  # self CPU seconds by kind of operation (torch profiler, one more pass)
    same_as_narrow: int  # rows whose answer equals the one-call-per-layer answer
    rows: int


# torch profiler op names by kind (anything else: "other")
OP_KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
    "KV cache growth (cat)": ("aten::cat",),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math"),
    "element-wise (mul, add, silu, pow, ...)": ("aten::mul", "aten::add", "aten::silu", "aten::pow", "aten::mean",
                                                "aten::rsqrt", "aten::neg", "aten::gelu", "aten::div_", "aten::cos", "aten::sin"),
}


def wide_vs_narrow(cfg: DictConfig, layers: list[int], n_prompts: int = 64, repeats: int = 2) -> list[WidthRun]:
    """`n_prompts` image prompts decoded at every layer in `layers`: one call of `n_prompts` rows per layer
    (what the CPU row cap gives) vs one call of all layers' rows (what a GPU gets), through `adapter.generate`
    as the eval task calls it; the time of each, where it goes by kind of operation, and whether the answers match."""
    from torch.profiler import ProfilerActivity, profile

    adapter, prompts, images, encoded, settings = _image_prompts(cfg, n_prompts)
    n = len(prompts)

    def call(group: list[int]) -> list[str]:
        rows = [layer for layer in group for _ in range(n)]
        outs = adapter.generate(prompts * len(group), images * len(group), encoded * len(group), rows, settings)
        return [o.text for o in outs]

    plans = {"one call per layer": [[layer] for layer in layers], "one call, all layers": [list(layers)]}

    def one_pass(groups: list[list[int]]) -> tuple[list[str], float]:
        t = time.perf_counter()
        texts = [text for group in groups for text in call(group)]
        return texts, time.perf_counter() - t

    one_pass(plans["one call per layer"][:2])  # warm-up
    best: dict[str, float] = {how: float("inf") for how in plans}
    texts: dict[str, list[str]] = {}
    for _ in range(repeats):  # the two ways take turns, so that a burst of load hits both alike
        for how, groups in plans.items():
            texts[how], seconds = one_pass(groups)
            best[how] = min(best[how], seconds)
    runs = []
    for how, groups in plans.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            one_pass(groups)
        by_op = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
        ops = {kind: sum(by_op.get(name, 0.0) for name in names) for kind, names in OP_KINDS.items()}
        ops["other"] = sum(by_op.values()) - sum(ops.values())
        same = sum(a == b for a, b in zip(texts[how], texts["one call per layer"], strict=True))
        runs.append(WidthRun(how, n * len(groups[0]), len(groups), best[how], ops, same, len(texts[how])))
    return runs
