"""Cross-layer decoding: the prompts of many layers of one process share `generate` batches (DESIGN.md §4).

Across the layers of a sweep the language model, the prompts and the decoding are the same; only the
features filling the image tokens differ, and the adapters take them per row. A per-layer batch (the
`batch_size` prompts that make a job's records) is therefore decoded once for several layers: its rows
are repeated once per layer, so every row keeps exactly the padding, attention mask and position ids
it has when that layer is decoded alone (docs/PERFORMANCE.md, "Layer-batched decoding").

Which layers share batches comes from a **plan**: the jobs this process is about to run that differ
only in `layer`. `task=eval`'s `layers=[...]` plans its own layers; with the project's launcher
(`hydra/launcher=vlmsafety`, the default), `python run.py -m layer=...` plans every job of the sweep.
The first job of a group decodes each of its batches for every pending layer of the group; the worker
keeps the other layers' answers until their jobs ask for them. Jobs still write their own folders,
keys, partial batches and metrics exactly as before.

This module is torch-free: the launcher imports it before any job runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Keys of a job's config that `layer` groups ignore besides what job keys ignore (jobs.NON_RESULT_KEYS).
_LAYER_KEYS = ("layer",)


@dataclass(frozen=True)
class PlannedJob:
    """One job of a plan: the layer it asks for (as written: null, negative or absolute), its folder
    and job key (a job already complete with that key needs no decoding)."""

    layer: Any
    out_dir: Path
    key: str


@dataclass(frozen=True)
class Settings:
    """`layer_batching` of the config: whether batches are shared across layers, and their budget."""

    enabled: bool = True
    memory_gb: float | None = None  # KV-cache budget of one shared batch; None = chosen per device (budget.py)
    max_rows: int | None = None  # rows of one shared batch at most; None = chosen per device

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Settings:
        node = cfg.get("layer_batching") or {}
        rows = node.get("max_rows")
        memory = node.get("memory_gb")
        return cls(
            enabled=bool(node.get("enabled", True)),
            memory_gb=None if memory is None else float(memory),
            max_rows=None if rows is None else int(rows),
        )


_PLANS: dict[str, list[PlannedJob]] = {}
_SEEN_COMPLETE: set[PlannedJob] = set()  # planned jobs found complete (a complete job stays complete)


def group_key(cfg: DictConfig) -> str:
    """Jobs with the same group key differ at most in `layer` (the job key without it)."""
    from vlmsafety.jobs import NON_RESULT_KEYS, _without_secrets

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain = {k: v for k, v in plain.items() if k not in NON_RESULT_KEYS and k not in _LAYER_KEYS and k != "hydra"}
    blob = json.dumps(_without_secrets(plain), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@contextmanager
def planned(jobs: Iterable[tuple[DictConfig, Path]]) -> Iterator[None]:
    """While active, eval jobs of these (config, folder) pairs decode their layers' batches together.

    A job whose config cannot be resolved here (or is not `task=eval`) is left out of the plan: it
    runs as before, on its own batches."""
    from vlmsafety.jobs import job_key

    added: list[tuple[str, PlannedJob]] = []
    for cfg, out_dir in jobs:
        try:
            if cfg.get("task") != "eval" or cfg.get("layers") is not None:
                continue
            job = PlannedJob(cfg.get("layer"), Path(out_dir), job_key(cfg))
            added.append((group_key(cfg), job))
        except Exception as e:  # noqa: BLE001 (the job itself reports its config error when it runs)
            log.debug("not planning %s for cross-layer decoding: %s", out_dir, e)
    for group, job in added:
        _PLANS.setdefault(group, []).append(job)
    try:
        yield
    finally:
        for group, job in added:
            jobs_of = _PLANS.get(group, [])
            if job in jobs_of:
                jobs_of.remove(job)
            _SEEN_COMPLETE.discard(job)
            if not jobs_of:
                _PLANS.pop(group, None)


def pending_peers(cfg: DictConfig) -> list[PlannedJob]:
    """The planned jobs of `cfg`'s group that are not complete yet (`cfg`'s own job among them)."""
    if not _PLANS:
        return []
    from vlmsafety.jobs import completed

    try:
        group = group_key(cfg)
    except Exception:  # noqa: BLE001
        return []
    pending = []
    for job in _PLANS.get(group, []):
        if job in _SEEN_COMPLETE:
            continue
        if completed(job.out_dir, job.key) is not None:  # complete under its key: it stays so (records are kept)
            _SEEN_COMPLETE.add(job)
            continue
        pending.append(job)
    return pending


def chunks(layers: Sequence[int], first: int, size: int) -> list[list[int]]:
    """`layers` in consecutive chunks of at most `size`, the chunk holding `first` first.

    Neighbouring layers tend to answer at similar lengths, and with transformers' `generate` (the families
    that do not drop finished rows) a shared batch runs until its longest row ends, so chunks keep layers
    in order rather than mixing distant ones."""
    size = max(1, size)
    out = [list(layers[k : k + size]) for k in range(0, len(layers), size)]
    out.sort(key=lambda c: first not in c)
    return out
