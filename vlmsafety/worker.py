"""The worker: one per process, owning the expensive state that jobs of a sweep share (DESIGN.md §4).

Loaded models are keyed by (source, revision, dtype, quant, adapter); a model whose weights a job
changed (`adapter.modified`, set by unlearning) is never handed out again but reloaded. Per-image vision features
by (model key, image content hash); judges and toxicity scorers by their config. With Hydra's
basic launcher every job of a sweep runs in this process, so a 25-layer sweep loads the model
once and runs the vision encoder once per image.
"""

from __future__ import annotations

import gc
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from vlmsafety.attacks import ImageSpec, image_sha256, render_image
from vlmsafety.judges import Judge, build_judge
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings
from vlmsafety.models.loading import load_adapter, resolve_device
from vlmsafety.toxicity import ToxicityScorer, build_scorer

log = logging.getLogger(__name__)

_MAX_CACHED_IMAGES = 4096
_MAX_CACHED_TEXT_BATCHES = 4096
_MAX_CACHED_LAYER_BATCHES = 65536  # answers decoded for a later job of the plan (a few KB each)


class FeatureCache:
    """LRU of per-image encoder outputs under a byte budget."""

    def __init__(self, max_bytes: int, device: torch.device):
        self.max_bytes = max_bytes
        self.device = device
        self._entries: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def get(self, key: tuple[str, str]) -> Any | None:
        item = self._entries.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return item[0]

    def put(self, key: tuple[str, str], entry: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        self._entries[key] = (_to_device(entry, self.device), nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            _, (_, n) = self._entries.popitem(last=False)
            self.nbytes -= n

    def drop_model(self, model_key: str) -> None:
        for key in [k for k in self._entries if k[0] == model_key]:
            self.nbytes -= self._entries.pop(key)[1]


@dataclass
class WorkerStats:
    """What the worker did in this process: how the benchmarks and tests see reuse."""

    models_loaded: int = 0  # `load_adapter` calls
    models_released: int = 0
    images_encoded: int = 0  # images passed through a vision encoder (cache misses)
    text_batches_decoded: int = 0  # text-only batches generated (not served from the cache)
    text_batches_reused: int = 0  # text-only batches served from the cache (another layer of a sweep)
    shared_batches: int = 0  # generate calls that decoded one prompt batch for several layers
    layer_batches_reused: int = 0  # a layer's batch served from an earlier job's shared batch


class Worker:
    """Loads and keeps models, features, judges and scorers for the jobs of one process."""

    def __init__(self) -> None:
        self.stats = WorkerStats()
        self._images: OrderedDict[str, tuple[Image.Image, str]] = OrderedDict()
        self._models: dict[str, FamilyAdapter] = {}
        self._judges: dict[str, Judge] = {}
        self._scorers: dict[str, ToxicityScorer] = {}
        self._text: OrderedDict[tuple, list[Generation]] = OrderedDict()
        self._layered: OrderedDict[tuple, list[Generation]] = OrderedDict()
        self.sharing_failed = False  # a shared generate call failed: the rest of the process decodes layers apart
        self.features = FeatureCache(max_bytes=8 << 30, device=torch.device("cpu"))
        self._torch_threads = torch.get_num_threads()  # torch's own default (one per core)
        self._threads: int | None = None  # the config's `threads`; None = the model's cpu_threads or torch's

    def configure(self, cfg: DictConfig) -> None:
        fc = cfg.get("feature_cache") or {}
        self.features.max_bytes = int(float(fc.get("max_gb", 8)) * (1 << 30))
        self.features.device = torch.device(fc.get("device", "cpu"))
        self._threads = int(cfg.threads) if cfg.get("threads") else None
        if self._threads:
            torch.set_num_threads(self._threads)

    def _set_threads(self, spec: DictConfig, device: torch.device) -> None:
        """torch's CPU threads for a job on `spec`: the config's `threads` when set; else, on the CPU, the
        model's `cpu_threads` (the built-in tiny models: 1, whose decoding steps are too small to split
        across threads: docs/PERFORMANCE.md); else torch's default."""
        want = self._threads or (int(spec.cpu_threads) if device.type == "cpu" and spec.get("cpu_threads") else None)
        want = want or self._torch_threads
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    # --- models -----------------------------------------------------------------------------
    @staticmethod
    def model_key(spec: DictConfig) -> str:
        fields = (
            "family", "path", "builtin", "id", "revision", "dtype", "quant", "quant_skip_modules", "chat_template",
            "chat_date", "adapter",
        )
        return json.dumps({k: _plain(spec.get(k)) for k in fields}, sort_keys=True)

    def model(self, spec: DictConfig, device: str = "auto") -> tuple[FamilyAdapter, bool]:
        """The adapter for `spec`, and whether this call loaded it (False = reused)."""
        key = self.model_key(spec) + f"|{device}"
        self._set_threads(spec, resolve_device(device))
        cached = self._models.get(key)
        if cached is not None and not cached.modified:
            return cached, False
        for old_key in list(self._models):  # one model at a time: free memory before the next loads
            self.release_model(old_key)
        adapter = load_adapter(spec, resolve_device(device))
        self.stats.models_loaded += 1
        adapter.cache_key = key
        self._models[key] = adapter
        return adapter, True

    def release_model(self, key: str) -> None:
        """Forget the model under `key` and its cached features (the next request loads it afresh)."""
        if self._models.pop(key, None) is not None:
            self.stats.models_released += 1
        self.features.drop_model(key)
        self.sharing_failed = False  # the next model gets its own chance at shared calls
        for store in (self._text, self._layered):
            for stale in [k for k in store if k[0] == key]:
                del store[stale]
        gc.collect()  # a model's modules hold reference cycles: free its memory now, not at some later GC
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def encode(self, adapter: FamilyAdapter, images: Sequence[Image.Image], hashes: Sequence[str]) -> list[Any]:
        """Per image, its `encode_images` entry: cached by content hash, encoding only the misses."""
        mkey = getattr(adapter, "cache_key", None) or f"unmanaged-{id(adapter)}"
        out: list[Any] = [self.features.get((mkey, h)) for h in hashes]
        missing = [i for i, e in enumerate(out) if e is None]
        # The same image can appear twice in one batch: encode each distinct hash once.
        todo: dict[str, int] = {}
        for i in missing:
            todo.setdefault(hashes[i], i)
        if todo:
            entries = adapter.encode_images([images[i] for i in todo.values()])
            self.stats.images_encoded += len(todo)
            fresh = dict(zip(todo, entries, strict=True))
            for h, entry in fresh.items():
                self.features.put((mkey, h), entry, adapter.entry_nbytes(entry))
            for i in missing:
                out[i] = fresh[hashes[i]]
        return out

    def encode_batch(self, adapter: FamilyAdapter, specs: Sequence[ImageSpec | None]) -> tuple[list[Any], list[Any]]:
        """Per row of a batch: its rendered (image, sha256) or None, and its `encode_images` entry or None
        (text-only rows)."""
        rendered = [self.image(spec) if spec is not None else None for spec in specs]
        with_image = [i for i, r in enumerate(rendered) if r is not None]
        entries = self.encode(adapter, [rendered[i][0] for i in with_image], [rendered[i][1] for i in with_image])
        encoded: list[Any] = [None] * len(specs)
        for i, entry in zip(with_image, entries, strict=True):
            encoded[i] = entry
        return rendered, encoded

    def text_generations(
        self, adapter: FamilyAdapter, prompts: Sequence[str], settings: GenerationSettings, seed: int,
        generate: Callable[[], list[Generation]], images: tuple[Any, ...] = (),
    ) -> tuple[list[Generation], bool]:
        """A batch's answers, decoded once per process, and whether they came from the cache: a
        text-only batch once for every layer (its answers cannot depend on the vision layer); an image
        batch when the same batch comes again at the same layer (`images`: the layer and the images'
        pixel hashes; the "before" evaluation of every unlearn job of a sweep).

        Keyed by the whole batch (its padding is part of the computation), the settings and the batch's
        seed, so a reused answer is the one `generate()` would give; never reused for a model a job has
        modified (unlearning), unless the job has frozen its weights under a `weights_tag` (then only
        answers decoded under that tag)."""
        tag = getattr(adapter, "weights_tag", None)
        if adapter.modified and tag is None:
            return generate(), False
        model_key = getattr(adapter, "cache_key", None) or f"unmanaged-{id(adapter)}"
        key = (model_key, tag if adapter.modified else None, tuple(prompts), images, settings, seed)
        hit = self._text.get(key)
        if hit is not None:
            self._text.move_to_end(key)
            self.stats.text_batches_reused += 1
            return hit, True
        out = generate()
        self.stats.text_batches_decoded += 1
        self._text[key] = out
        if len(self._text) > _MAX_CACHED_TEXT_BATCHES:
            self._text.popitem(last=False)
        return out, False

    def layer_generations(
        self, adapter: FamilyAdapter, batch_key: tuple, layer: int, plan: Callable[[], list[list[int]]],
        generate: Callable[[list[int]], dict[int, list[Generation]]],
    ) -> tuple[list[Generation], bool, int]:
        """An image batch's answers at `layer`, decoded together with other layers' copies of the batch.

        batch_key: what fixes the batch's computation apart from the layer (prompts, image hashes,
        settings, seed); plan(): on a miss, the layers to decode in chunks (`layer`'s chunk first; other
        layers whose answers are already waiting are left out); generate(chunk): layer -> answers.
        Returns the answers, whether an earlier job's shared batch had decoded them, and the new tokens
        decoded here for other layers. An entry is handed out once; never cached for a modified model."""
        if adapter.modified:
            return generate([layer])[layer], False, 0
        mkey = getattr(adapter, "cache_key", None) or f"unmanaged-{id(adapter)}"
        hit = self._layered.pop((mkey, batch_key, layer), None)
        if hit is not None:
            self.stats.layer_batches_reused += 1
            return hit, True, 0
        mine: list[Generation] | None = None
        others = 0
        for chunk in [] if self.sharing_failed else plan():
            todo = [v for v in chunk if v == layer or (mkey, batch_key, v) not in self._layered]
            if not todo:
                continue
            try:
                outs = generate(todo)
            except RuntimeError as e:  # e.g. out of memory: other layers' rows must not fail this job
                if len(todo) == 1:
                    raise
                log.warning("a generate call shared by layers %s failed (%s); layer %d and the rest of this process "
                            "decode layers apart", todo, str(e).splitlines()[0] if str(e) else type(e).__name__, layer)
                self.sharing_failed = True
                _free_accelerator_memory()
                break
            self.stats.shared_batches += len(todo) > 1
            for value, answers in outs.items():
                if value == layer:
                    mine = answers
                    continue
                others += sum(g.n_new_tokens for g in answers)
                self._layered[(mkey, batch_key, value)] = answers
                if len(self._layered) > _MAX_CACHED_LAYER_BATCHES:
                    self._layered.popitem(last=False)
        if mine is None:  # `layer` was not in the plan: decode it alone
            mine = generate([layer])[layer]
        return mine, False, others

    # --- images ------------------------------------------------------------------------------------
    def image(self, spec: ImageSpec) -> tuple[Image.Image, str]:
        """The rendered (or loaded) image for `spec` and the sha256 of its pixels, cached by spec."""
        key = json.dumps(spec.to_dict(), sort_keys=True)
        hit = self._images.get(key)
        if hit is None:
            img = render_image(spec)
            hit = (img, image_sha256(img))
            self._images[key] = hit
            if len(self._images) > _MAX_CACHED_IMAGES:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(key)
        return hit

    # --- judges and scorers -----------------------------------------------------------------------
    def judges(self, cfg: DictConfig | None) -> list[Judge]:
        return [self._cached(self._judges, name, node, build_judge) for name, node in _items(cfg)]

    def scorers(self, cfg: DictConfig | None) -> list[ToxicityScorer]:
        return [self._cached(self._scorers, name, node, build_scorer) for name, node in _items(cfg)]

    @staticmethod
    def _cached(store: dict[str, Any], name: str, node: Any, build: Any) -> Any:
        plain = _plain(node) or {}
        key = json.dumps([name, plain], sort_keys=True)
        if key not in store:
            store[key] = build(name, plain)
        return store[key]


def _free_accelerator_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _items(cfg: DictConfig | None) -> list[tuple[str, Any]]:
    if cfg is None:
        return []
    return [(name, node) for name, node in cfg.items() if node is not None]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _to_device(entry: Any, device: torch.device) -> Any:
    if isinstance(entry, torch.Tensor):
        return entry.to(device)
    if isinstance(entry, tuple) and hasattr(entry, "_fields"):  # NamedTuple
        return type(entry)(*(_to_device(e, device) for e in entry))
    if isinstance(entry, (list, tuple)):
        return type(entry)(_to_device(e, device) for e in entry)
    if isinstance(entry, dict):
        return {k: _to_device(v, device) for k, v in entry.items()}
    return entry


_WORKER: Worker | None = None


def get_worker() -> Worker:
    """The process-wide worker (created on first use)."""
    global _WORKER
    if _WORKER is None:
        _WORKER = Worker()
    return _WORKER
