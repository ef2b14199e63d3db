"""How many layers' copies of one prompt batch share a `generate` call (cross-layer decoding).

A shared batch holds `rows × layers` rows, each with its KV cache for the padded prompt plus the new
tokens (`FamilyAdapter.row_memory_bytes`). The number of layers is the largest that keeps
- its memory under the budget: `layer_batching.memory_gb`, else half the GPU memory free after the
  model loaded (CUDA), else 2 GiB (CPU); and
- its rows under `layer_batching.max_rows`, else no cap on CUDA (decoding a 7B model is memory-bound:
  a step costs about the same at batch 8 and 256), else 64 on a CPU, where a decoding step's arithmetic
  grows with the rows and a shared batch runs until its longest row ends (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import torch

from vlmsafety.layer_batching import Settings
from vlmsafety.models.base import FamilyAdapter

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
