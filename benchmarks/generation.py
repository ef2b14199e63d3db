"""Batched vs one-prompt-at-a-time generation: new tokens per second at several batch sizes.

In process, on the default model (conf/config.yaml), through the same worker and adapter calls as
task=eval: the same image prompts, greedy, `max_new_tokens` from the config, features precomputed
(the vision encoder is not what is measured here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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


def tokens_per_second(cfg: DictConfig, batch_sizes: tuple[int, ...], n_prompts: int = 32, repeats: int = 3) -> list[GenerationRun]:
    """Generate the same `n_prompts` image prompts at each batch size; count the tokens each row generated."""
    worker = get_worker()
    worker.configure(cfg)
    adapter, _ = worker.model(cfg.model, cfg.device)
    items = [it for it in load_attack_set(cfg.attack, limit=None, seed=cfg.seed).items if it.image is not None]
    items = items[:n_prompts]
    layer = adapter.default_layer
    settings = GenerationSettings(max_new_tokens=int(cfg.max_new_tokens))
    rendered = [worker.image(it.image) for it in items]
    encoded = worker.encode(adapter, [r[0] for r in rendered], [r[1] for r in rendered])
    prompts = [adapter.render(it.text, True) for it in items]

    def one_pass(bs: int) -> tuple[int, float]:
        t = time.perf_counter()
        tokens = 0
        for k in range(0, len(items), bs):
            outs = adapter.generate(
                prompts[k : k + bs], [r[0] for r in rendered[k : k + bs]], encoded[k : k + bs], layer, settings
            )
            tokens += sum(o.n_new_tokens for o in outs)
        return tokens, time.perf_counter() - t

    one_pass(max(batch_sizes))  # warm-up: first calls allocate and fill caches
    # rounds interleave the batch sizes, so that a burst of load from other processes hits them alike
    passes: dict[int, list[tuple[int, float]]] = {bs: [] for bs in batch_sizes}
    for _ in range(repeats):
        for bs in batch_sizes:
            passes[bs].append(one_pass(bs))
    return [GenerationRun(bs, len(items), p[0][0], min(s for _, s in p)) for bs, p in passes.items()]
