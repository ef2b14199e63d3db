"""Cross-layer decoding in a job: which layers share its calls, how many per call, and the shared call.

How many layers' copies of one prompt batch share a `generate` call:

A shared batch holds `rows × layers` rows, each with its KV cache for the padded prompt plus the new
tokens (`FamilyAdapter.row_memory_bytes`). The number of layers is the largest that keeps
- its memory under the budget: `layer_batching.memory_gb`, else half the GPU memory free after the
  model loaded (CUDA), else 2 GiB (CPU); and
- its rows under `layer_batching.max_rows`, else no cap on CUDA (decoding a 7B model is memory-bound:
  a step costs about the same at batch 8 and 256), else 64 on a CPU, where wider calls did not pay: a
  wide call's KV cache growth and element-wise work outgrow the CPU's caches (`make bench` measures it:
  docs/PERFORMANCE.md section 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from vlmsafety import layer_batching
from vlmsafety.errors import VlmSafetyError
from vlmsafety.layer_batching import Settings
from vlmsafety.layers import resolve_layer
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings

if TYPE_CHECKING:
    from vlmsafety.worker import Worker

CPU_MEMORY_GB = 2.0
CPU_MAX_ROWS = 64
CUDA_FREE_SHARE = 0.5  # of the memory free after loading: room for activations, the allocator's slack, judges


def budget_bytes(settings: Settings, device: torch.device) -> int:
    """Memory one shared batch may hold (bytes)."""
    if settings.memory_gb is not None:
        return int(settings.memory_gb * (1 << 30))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(CUDA_FREE_SHARE * free)
    return int(CPU_MEMORY_GB * (1 << 30))


def max_rows(settings: Settings, device: torch.device) -> int | None:
    if settings.max_rows is not None:
        return settings.max_rows
    return None if device.type == "cuda" else CPU_MAX_ROWS


def layers_per_batch(adapter: FamilyAdapter, settings: Settings, rows: int, tokens_per_row: int) -> int:
    """Layers whose copies of a `rows`-prompt batch go into one generate call (at least 1)."""
    device = adapter.device
    per_layer = rows * adapter.row_memory_bytes(tokens_per_row)
    k = budget_bytes(settings, device) // max(1, per_layer)
    cap = max_rows(settings, device)
    if cap is not None:
        k = min(k, cap // max(1, rows))
    return max(1, int(k))


def cross_layer_plan(cfg: DictConfig, adapter: FamilyAdapter, layer: int) -> list[int] | None:
    """The layers (absolute, sorted) whose batches this job decodes together with its own, or None.

    They are the layers of the planned jobs of this job's group that are not complete yet
    (layer_batching.py). Off with `layer_batching.enabled=false`, and for sampling: a row's random
    draws would then depend on what else shares its batch."""
    settings = layer_batching.Settings.from_config(cfg)
    if not settings.enabled or bool(cfg.do_sample):
        return None
    peers = layer_batching.pending_peers(cfg)
    if not peers:
        return None
    layers = {layer}  # the last job of a group decodes nothing new: its answers wait in the worker
    for job in peers:
        try:
            layers.add(resolve_layer(job.layer, adapter.num_layers, adapter.default_layer, cfg.model.name))
        except VlmSafetyError:
            continue  # that job fails on its own, with this message
    return sorted(layers)


def decode_across_layers(
    worker: Worker, adapter: FamilyAdapter, prompts: list[str], rendered: list[Any], encoded: list[Any], layer: int,
    layers: list[int], settings: GenerationSettings, seed: int, budget: Settings,
) -> tuple[list[Generation], bool, int]:
    """One image batch at `layer`, decoded in generate calls shared with `layers` (greedy only).

    A shared call repeats the batch once per layer: every row keeps the padding, attention mask and
    position ids it has in the batch decoded alone, and only its image features differ. Returns the
    answers, whether an earlier job had decoded them, and the new tokens decoded for other layers."""
    images = [r[0] for r in rendered]
    n = len(prompts)

    def plan() -> list[list[int]]:
        length = adapter.model_inputs(prompts, images)["input_ids"].shape[1]  # padded prompt tokens
        k = layers_per_batch(adapter, budget, n, length + settings.max_new_tokens)
        return layer_batching.chunks(layers, layer, k)

    def generate(chunk: list[int]) -> dict[int, list[Generation]]:
        torch.manual_seed(seed)
        outs = adapter.generate(prompts * len(chunk), images * len(chunk), encoded * len(chunk),
                                [v for v in chunk for _ in range(n)], settings)
        return {v: outs[j * n : (j + 1) * n] for j, v in enumerate(chunk)}

    key = (tuple(prompts), tuple(r[1] for r in rendered), settings, seed)
    return worker.layer_generations(adapter, key, layer, plan, generate)
