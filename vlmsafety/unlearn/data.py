"""Unlearning data: harmful requests with a harmful and a safe answer each, and normal (benign) tasks.

A data source (registered by name, selected by `unlearn.data.harmful.source` / `.normal.source`)
yields `HarmfulRequest`s and/or normal `Example`s. `build_data` turns them into what the loop reads:
- forget: harmful request → its harmful answer (the completion to unlearn);
- helpful: the same request → the source's safe answer, else a refusal template (seeded per id);
- normal: benign request → answer, split into a training part (KL / retain) and a held-out part
  (utility NLL before and after).
Image policies (`unlearn.data.image`) attach an image to every harmful request for multimodal
unlearning: the source's own image (`dataset`), the request rendered as typography (`figstep`), or a
benign picture (`benign`). A list of policies (`[benign, figstep]`) gives each request once per
policy (ids suffixed `@<policy>`; a request with its own image once); `normal_image` likewise for
normal examples, where `figstep` renders a benign request without an image as typography (so that
a model taught to refuse harmful typography still reads benign typography).
"""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import ListConfig, OmegaConf

from vlmsafety.attacks.base import ImageSpec
from vlmsafety.attacks.images import FIGSTEP_PROMPT
from vlmsafety.errors import VlmSafetyError, check_options
from vlmsafety.registry import Registry

IMAGE_POLICIES = ("none", "dataset", "figstep", "benign")
NORMAL_IMAGE_POLICIES = ("none", "dataset", "benign", "figstep")

# Refusals for requests whose source has no safe answer. Each one contains a string of GCG's
# refusal list, so the keyword judge reads a learnt refusal as a refusal.
ENGLISH_REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I cannot help with that request.",
    "I cannot assist with that, because it could cause serious harm to people.",
    "I'm not able to provide that. If someone is in danger, please contact local emergency services.",
    "As an AI assistant, I must decline this request because it could be used to hurt someone.",
)


@dataclass(frozen=True)
class Example:
    """One sample the loss reads: a user turn (text, optional image) and the answer whose tokens count."""

    id: str
    prompt: str  # the user's text turn, before the chat template
    answer: str
    image: ImageSpec | None = None
    about_image: bool = False  # the prompt asks about its image (a visual question): without the image it makes
                               # no sense, so `normal_image: none` drops the example instead of its image
    layer: int | None = None  # the vision layer whose features stand for the image (layer-wise recipes set it
                              # per step); None = the model's own forward, i.e. its trained default layer


@dataclass(frozen=True)
class HarmfulRequest:
    """A harmful request as a source gives it."""

    id: str
    prompt: str
    harmful: str | None  # a harmful completion to unlearn (None: the source has none, e.g. VLGuard)
    safe: str | None = None  # the source's own safe completion, if any
    image: ImageSpec | None = None  # the source's own image for this request, if any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class UnlearnData:
    """What the loop trains on and measures; `forget[i]` and `helpful[i]` share request i (forget may be None)."""

    forget: list[Example | None]
    helpful: list[Example]
    normal: list[Example]
    heldout: list[Example]
    sources: dict[str, str]  # role -> where the rows came from

    @property
    def forget_examples(self) -> list[Example]:
        return [f for f in self.forget if f is not None]


class DataSource:
    """A source of harmful requests and/or normal examples; subclasses override what they provide.

    Options in the source's config node (besides `source`) are the constructor's keyword arguments.
    """

    name = "source"
    refusals: tuple[str, ...] = ENGLISH_REFUSALS
    description = ""  # where the rows come from, for metrics

    def harmful(self) -> list[HarmfulRequest]:
        raise VlmSafetyError(f"unlearn data source {self.name!r} has no harmful requests; use it as a normal source")

    def normal(self) -> list[Example]:
        raise VlmSafetyError(f"unlearn data source {self.name!r} has no normal examples; use it as a harmful source")

    def typography(self, request: HarmfulRequest) -> tuple[str, ImageSpec]:
        """The request moved into the image (FigStep: typography of the request + FigStep's text prompt)."""
        return FIGSTEP_PROMPT, ImageSpec("figstep", {"instruction": request.prompt})

    def benign_image(self, key: str) -> ImageSpec:
        """A benign picture that says nothing about the request (seeded by `key`)."""
        return ImageSpec("picture", {"seed": zlib.crc32(key.encode("utf-8")), "size": 336})

    def normal_typography(self, example: Example) -> Example:
        """A benign request moved into the image, with the same answer (FigStep's typography and prompt)."""
        return replace(example, prompt=FIGSTEP_PROMPT, image=ImageSpec("figstep", {"instruction": example.prompt}),
                       about_image=True)


def _load_builtins() -> None:
    from vlmsafety.unlearn import english, files, organism  # noqa: F401  (register the shipped sources)


SOURCES: Registry[Callable[..., DataSource]] = Registry("unlearn data source", _load_builtins)


def register_source(name: str) -> Callable[[type[DataSource]], type[DataSource]]:
    def wrap(cls: type[DataSource]) -> type[DataSource]:
        cls.name = name
        return SOURCES.register(name)(cls)

    return wrap


def make_source(node: Any, where: str) -> DataSource:
    """The source a `{source: name, ...options}` node describes."""
    options = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    if not isinstance(options, dict):
        raise VlmSafetyError(f"{where} must be a {{source: name, ...}} node, got {options!r}")
    name = options.pop("source", None)
    if not name:
        raise VlmSafetyError(f"{where}.source is not set; known sources: {', '.join(SOURCES.names())}")
    cls = SOURCES.get(str(name), where=f"{where}.source")
    check_options(f"{where} (source {name})", cls, options)
    return cls(**options)


def make_sources(node: Any, where: str) -> list[DataSource]:
    """One source node, or a list of them (their rows are concatenated in order)."""
    if node is None:
        raise VlmSafetyError(f"{where} is not set; e.g. {where}={{source: builtin}}")
    if isinstance(node, (list, tuple)) or OmegaConf.is_list(node):
        return [make_source(n, f"{where}[{i}]") for i, n in enumerate(node)]
    return [make_source(node, where)]


def build_data(cfg: Any, seed: int = 0) -> UnlearnData:
    """Forget / helpful / normal / held-out examples from the `unlearn.data` node.

    `image` (harmful requests) and `normal_image` (normal examples) say which images go with the text:
    `none` drops every image (and the normal examples that ask about theirs, `about_image`); `dataset`
    keeps the source's own images (a harmful request without one is an error); `figstep` / `benign` keep own images and give requests without one their
    typography / a benign picture (`normal_image: benign` does the latter for normal examples).
    """
    images = policies(cfg.get("image", "none"), IMAGE_POLICIES, "unlearn.data.image")
    normal_images = policies(cfg.get("normal_image", "none"), NORMAL_IMAGE_POLICIES, "unlearn.data.normal_image")
    harmful_srcs = make_sources(cfg.get("harmful"), "unlearn.data.harmful")
    normal_srcs = make_sources(cfg.get("normal"), "unlearn.data.normal")
    requests = _limit([(src, r) for src in harmful_srcs for r in src.harmful()], cfg.get("max_harmful"), seed)
    if not any(r.harmful for _, r in requests):
        raise VlmSafetyError(
            f"unlearn.data.harmful ({', '.join(s.name for s in harmful_srcs)}) gave no request with a harmful answer to forget"
        )
    benign = benign_pictures(cfg)
    custom = tuple(cfg.get("refusals") or ())
    forget, helpful = [], []
    for src, r in requests:
        refusals = custom or src.refusals
        safe = r.safe if r.safe is not None else refusals[zlib.crc32(r.id.encode("utf-8")) % len(refusals)]
        variants = _variants([(p, _with_image(src, r, p, benign)) for p in images])
        if not variants:
            continue
        for policy, (prompt, img) in variants:
            rid = r.id if len(images) == 1 else f"{r.id}@{policy}"
            forget.append(Example(rid, prompt, r.harmful, img) if r.harmful else None)
            helpful.append(Example(rid, prompt, safe, img))

    normal_all = []
    for src in normal_srcs:
        for ex in src.normal():
            for policy, variant in _variants([(p, _normal_image(src, ex, p, benign)) for p in normal_images]):
                normal_all.append(variant if len(normal_images) == 1 else replace(variant, id=f"{ex.id}@{policy}"))
    normal = _limit(normal_all, cfg.get("max_normal"), seed)
    train, heldout = split_heldout(normal, float(cfg.get("heldout_fraction", 0.25)), seed)
    describe = lambda srcs: " + ".join(s.description or s.name for s in srcs)  # noqa: E731
    return UnlearnData(forget, helpful, train, heldout, sources={"harmful": describe(harmful_srcs), "normal": describe(normal_srcs)})


def benign_pictures(cfg: Any) -> Callable[[DataSource, str], ImageSpec]:
    """(source, key) → the benign picture for `key`: the source's own (seeded), or with
    `unlearn.data.image_dir` a seeded pick from that folder (e.g. COCO val2014, as AdvBench-COCO pairs
    its prompts; `image_seed` as `attack.image_seed`)."""
    folder = cfg.get("image_dir")
    if folder in (None, ""):
        return lambda src, key: src.benign_image(key)
    from vlmsafety.attacks.pairing import folder_images, pick

    files = folder_images(Path(os.path.expanduser(str(folder))))
    seed = int(cfg.get("image_seed", 0))
    return lambda src, key: ImageSpec("file", {"path": str(pick(files, seed, key))})


def _with_image(
    src: DataSource, r: HarmfulRequest, policy: str, benign: Callable[[DataSource, str], ImageSpec]
) -> tuple[str, ImageSpec | None] | None:
    """(prompt, image) of `r` under one policy; None = the policy leaves it out (a request about its own
    image, `meta.about_image`, makes no sense without it)."""
    if policy == "none":
        return None if r.meta.get("about_image") else (r.prompt, None)
    if r.image is not None:
        return r.prompt, r.image
    if policy == "dataset":
        raise VlmSafetyError(
            f"unlearn.data.image=dataset, but request {r.id!r} of source {src.name!r} has no image; "
            "use unlearn.data.image=figstep or benign"
        )
    if policy == "figstep":
        return src.typography(r)
    return r.prompt, benign(src, r.id)


def policies(value: Any, valid: Sequence[str], where: str) -> list[str]:
    """One image policy or a list of them, each checked against `valid`."""
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    names = [str(v) for v in values]
    bad = [n for n in names if n not in valid]
    if bad or not names or len(set(names)) != len(names):
        raise VlmSafetyError(
            f"{where}={value!r} is not valid; use one of {', '.join(valid)}, or a list of distinct ones such as [benign, figstep]"
        )
    return names


def _variants(made: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(policy, result) pairs without the Nones and without results an earlier policy already gave."""
    out: list[tuple[str, Any]] = []
    for policy, result in made:
        if result is not None and all(result != seen for _, seen in out):
            out.append((policy, result))
    return out


def _normal_image(src: DataSource, ex: Example, policy: str, benign: Callable[[DataSource, str], ImageSpec]) -> Example | None:
    """`ex` under one normal-image policy; None = the policy leaves it out."""
    if policy == "none":
        return None if ex.about_image else replace(ex, image=None)
    if policy == "benign" and ex.image is None:
        return replace(ex, image=benign(src, ex.id))
    if policy == "figstep":
        return src.normal_typography(ex) if ex.image is None else None
    return ex


def split_heldout(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held-out): a seeded `fraction` of the examples held out (at least one of each when ≥ 2)."""
    if not 0.0 <= fraction < 1.0:
        raise VlmSafetyError(f"unlearn.data.heldout_fraction={fraction} must be in [0, 1)")
    if len(examples) < 2:
        raise VlmSafetyError(f"unlearn.data.normal has {len(examples)} example(s); need at least 2 (train and held-out)")
    k = min(len(examples) - 1, max(1, round(fraction * len(examples)))) if fraction > 0 else 0
    held = set(random.Random(seed).sample(range(len(examples)), k))
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def _limit(items: list, limit: int | None, seed: int) -> list:
    """At most `limit` items, a seeded sample kept in source order."""
    if limit is None or int(limit) >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), int(limit)))
    return [items[i] for i in keep]
