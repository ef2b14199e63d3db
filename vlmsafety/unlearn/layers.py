"""Which vision layer a training example's image features come from (`unlearn.train.layers`).

Layer-wise safety tuning (paper 1's defence, here as SFT / DPO rather than its L-PPO) shows the
language model the features of many vision layers, not only the trained default one. Each image
example of a step gets a layer drawn from a seeded distribution:
- `uniform` (or null / `all`): every layer 0..N with the same weight;
- a list of layers, `[0, 8, 16, 23]`: those, uniformly;
- a mapping layer → weight, `{23: 2, 12: 1, 0: 1}`: those, with the weights normalised;
- `default`: the trained default layer only (layer sampling switched off, for comparison).
Negative layers count from the end (`-1` = N), as `layer` does.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from vlmsafety.errors import VlmSafetyError
from vlmsafety.layers import resolve_layer


@dataclass(frozen=True)
class LayerDistribution:
    """Layers to draw from and their probabilities (same length, probabilities sum to 1)."""

    layers: tuple[int, ...]
    probs: tuple[float, ...]

    def sample(self, rng: random.Random, n: int) -> list[int]:
        """`n` layers drawn independently (with replacement) from the distribution, by `rng`."""
        return rng.choices(self.layers, weights=self.probs, k=n)

    def describe(self) -> str:
        if len(set(self.probs)) == 1:
            return f"uniform over {len(self.layers)} layers {_span(self.layers)}"
        return ", ".join(f"{layer}: {p:.3g}" for layer, p in zip(self.layers, self.probs, strict=True))


def _span(layers: Sequence[int]) -> str:
    if list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return str(list(layers))


def layer_distribution(value: Any, num_layers: int, default_layer: int, model: str = "model") -> LayerDistribution:
    """The distribution a `unlearn.train.layers` value describes (module docstring) for a model with
    layers 0..`num_layers` trained at `default_layer`; one line naming what to fix when it is not valid."""
    where = "unlearn.train.layers"
    resolve = lambda layer: resolve_layer(layer, num_layers, default_layer, model)  # noqa: E731
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None or str(value) in ("uniform", "all"):
        layers = list(range(num_layers + 1))
        return LayerDistribution(tuple(layers), tuple(1 / len(layers) for _ in layers))
    if str(value) == "default":
        return LayerDistribution((default_layer,), (1.0,))
    if isinstance(value, Mapping):
        weights: dict[int, float] = {}
        for key, w in value.items():
            try:
                layer, weight = resolve(key), float(w)
            except (TypeError, ValueError):
                raise VlmSafetyError(f"{where}: {key!r}: {w!r} is not a layer: weight pair, e.g. {{23: 2, 0: 1}}") from None
            if weight < 0:
                raise VlmSafetyError(f"{where}: layer {key} has weight {weight}; weights must be ≥ 0")
            weights[layer] = weights.get(layer, 0.0) + weight
        total = sum(weights.values())
        if not total > 0:
            raise VlmSafetyError(f"{where}: the weights sum to {total}; give at least one layer a positive weight")
        kept = sorted(layer for layer, w in weights.items() if w > 0)
        return LayerDistribution(tuple(kept), tuple(weights[layer] / total for layer in kept))
    if isinstance(value, (list, tuple)):
        if not value:
            raise VlmSafetyError(f"{where} is an empty list; give layers such as [0, 12, 23], or uniform")
        try:
            layers = sorted({resolve(v) for v in value})
        except (TypeError, ValueError):
            raise VlmSafetyError(f"{where}={value!r} must list layer numbers, e.g. [0, 12, 23]") from None
        return LayerDistribution(tuple(layers), tuple(1 / len(layers) for _ in layers))
    if isinstance(value, int) and not isinstance(value, bool):
        return LayerDistribution((resolve(value),), (1.0,))
    raise VlmSafetyError(
        f"{where}={value!r} is not valid; use uniform, default, a list of layers [0, 12, 23] or weights {{23: 2, 0: 1}}"
    )
