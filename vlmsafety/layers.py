"""The one definition of `layer` shared by every model family (DESIGN.md §3).

`layer` = how many vision-encoder blocks run before the features go on to the projector:
0 = patch + position embeddings, N = output of the last block, negative values count from
the end as in Python (-1 = N), None = the model's own trained default.
"""

from __future__ import annotations

from vlmsafety.errors import VlmSafetyError


def resolve_layer(layer: int | str | None, num_layers: int, default_layer: int, model: str = "model") -> int:
    """Map a user's `layer` value to an absolute depth in 0..num_layers."""
    if layer is None or (isinstance(layer, str) and layer.lower() in {"null", "none", "default"}):
        return default_layer
    try:
        value = int(layer)
        if isinstance(layer, float) and layer != value:
            raise ValueError
    except (TypeError, ValueError):
        raise VlmSafetyError(
            f"layer={layer!r} is not an integer: {_valid(model, num_layers, default_layer)}"
        ) from None
    if not -(num_layers + 1) <= value <= num_layers:
        raise VlmSafetyError(f"layer {value} is out of range: {_valid(model, num_layers, default_layer)}")
    return value if value >= 0 else num_layers + 1 + value


def _valid(model: str, num_layers: int, default_layer: int) -> str:
    return (
        f"{model} has {num_layers} vision blocks, so valid layers are 0..{num_layers} "
        f"(or -{num_layers + 1}..-1 counting from the end, or null for its trained default {default_layer})"
    )
