"""Attack sets: registered loaders turn an `attack` config node into `AttackItem`s."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from omegaconf import DictConfig, ListConfig

# Importing a loader module registers its loaders (and typo.py its image recipe).
from vlmsafety.attacks import (  # noqa: F401
    advbench,
    builtin,
    figstep,
    generic,
    harmbench,
    jailbreakbench,
    jailbreakv,
    mmsafetybench,
    organism,
    typo,
    xstest,
)
from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, get_loader, register_attack
from vlmsafety.attacks.images import image_sha256, register_recipe, render_image
from vlmsafety.errors import VlmSafetyError

__all__ = [
    "AttackItem",
    "AttackSet",
    "ImageSpec",
    "image_sha256",
    "load_attack",
    "load_attack_set",
    "register_attack",
    "register_recipe",
    "render_image",
    "sample_items",
]


def sample_items(items: Sequence[AttackItem], limit: int | None, seed: int) -> list[AttackItem]:
    """At most `limit` items drawn without replacement with `seed`, kept in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise VlmSafetyError(f"limit must be a non-negative integer or null, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def load_attack_set(attack_cfg: DictConfig, *, limit: int | None = None, seed: int = 0) -> AttackSet:
    """The attack set `attack_cfg` describes, filtered by `attack_cfg.categories`, then sampled.

    `skipped` counts the rows the loader dropped under `attack.on_bad_row=skip` (before filtering).
    """
    name = attack_cfg.get("name", attack_cfg.get("loader"))
    loader_name = attack_cfg.get("loader")
    if not loader_name:
        raise VlmSafetyError(f"attack {name!r} has no `loader` key; set attack.loader to a registered loader")
    loaded = get_loader(str(loader_name))(attack_cfg)
    items = loaded.items

    categories = attack_cfg.get("categories")
    if categories is not None:
        if not isinstance(categories, (str, list, tuple, ListConfig)):
            raise VlmSafetyError(f"attack.categories must be a list of category names or null, got {categories!r}")
        wanted = [str(categories)] if isinstance(categories, str) else [str(c) for c in categories]
        available = sorted({item.category for item in items})
        unknown = [c for c in wanted if c not in available]
        if unknown:
            raise VlmSafetyError(
                f"attack {name!r}: unknown categories {unknown} in attack.categories; available: {', '.join(available)}"
            )
        items = [item for item in items if item.category in wanted]

    items = sample_items(items, limit, seed)
    if not items:
        raise VlmSafetyError(f"attack {name!r} has no items left (categories={categories}, limit={limit})")
    return replace(loaded, items=items)


def load_attack(attack_cfg: DictConfig, *, limit: int | None = None, seed: int = 0) -> list[AttackItem]:
    """The items of `load_attack_set(attack_cfg, limit=limit, seed=seed)`."""
    return load_attack_set(attack_cfg, limit=limit, seed=seed).items
