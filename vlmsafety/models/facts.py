"""Architecture facts read from a checkpoint's config.json alone: what `task=inspect` prints.

Nothing here loads weights. Parameter counts come from instantiating the model class on the
`meta` device (shapes only, no memory), so the memory estimates follow the real module tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig
from transformers.quantizers.quantizers_utils import should_convert_module

from vlmsafety.errors import VlmSafetyError

# NF4 with double quantization (QLoRA): 4 bits per weight, one 8-bit absmax per block of 64
# weights, one fp32 constant per 256 blocks.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
BF16_BYTES = 2


@dataclass(frozen=True)
class Architecture:
    """A checkpoint's early-exit facts, derived from its config only."""

    family: str
    model_type: str
    vision_layers: int  # N: vision blocks that `layer` counts; valid layers are 0..N
    default_layer: int  # the trained default, in 0..N
    layer_meaning: str  # what `layer=L` selects in this architecture (one line)
    vision_width: int  # D: width of one vision token at every layer
    projector: str  # what maps layer-L features into the LM, with its shapes
    image_tokens: str  # what one image costs the LM: positions in the sequence or cross-attention states
    language_model: str  # the LM's shape in one line


@dataclass(frozen=True)
class WeightBudget:
    """Parameter counts and the weight memory they imply (weights only: no activations, KV cache or features)."""

    total_params: int
    kept_params: int  # parameters outside quantizable Linear layers or under skip modules (stay in bf16)
    quantizable_params: int  # weights of nn.Linear layers that bitsandbytes would convert

    @property
    def bf16_bytes(self) -> int:
        return self.total_params * BF16_BYTES

    @property
    def nf4_bytes(self) -> int:
        return int(self.kept_params * BF16_BYTES + self.quantizable_params * NF4_BYTES_PER_PARAM)

    @property
    def int8_bytes(self) -> int:
        return self.kept_params * BF16_BYTES + self.quantizable_params


def weight_budget(model_class: type, config: Any, skip_modules: list[str]) -> WeightBudget:
    """Count parameters by building `model_class(config)` on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = model_class._from_config(config)
    total = sum(p.numel() for p in model.parameters())
    quantizable = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and should_convert_module(name, skip_modules)
    )
    return WeightBudget(total_params=total, kept_params=total - quantizable, quantizable_params=quantizable)


def parse_config(raw: dict[str, Any]) -> Any:
    """A config.json's dict as its transformers config class (keys starting `_vlmsafety` are notes)."""
    fields = {k: v for k, v in raw.items() if not k.startswith("_vlmsafety")}
    if "model_type" not in fields:
        raise VlmSafetyError("config.json has no model_type; is it a transformers checkpoint config?")
    return AutoConfig.for_model(**fields)


def check_config(spec: Any, family: Any, config: Any, where: str) -> None:
    """The checkpoint must be of the family's model type, with the layer facts its YAML declares.

    family: a `FamilyAdapter` subclass; where: which config.json this is, for the message.
    """
    expected = family.model_class.config_class.model_type
    if config.model_type != expected:
        raise VlmSafetyError(
            f"model {spec.get('name')!r} is family {spec.get('family')!r} ({expected}) but {where} describes a "
            f"{config.model_type!r} checkpoint; fix model.family or model.path"
        )
    num_layers, default_layer = family.layer_range(config)
    for key, actual in (("vision_layers", num_layers), ("default_layer", default_layer)):
        declared = spec.get(key)
        if declared is not None and int(declared) != actual:
            raise VlmSafetyError(
                f"model {spec.get('name')!r} declares {key}={declared} but {where} gives {actual}; "
                f"fix conf/model/{spec.get('name')}.yaml"
            )


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def lm_summary(text_config: Any) -> str:
    """One line on a config's language model: type, depth × width, vocabulary."""
    return (
        f"{text_config.model_type}: {text_config.num_hidden_layers} layers × {text_config.hidden_size}, "
        f"vocab {text_config.vocab_size}"
    )


def vision_default(feature_layer: int, num_layers: int) -> int:
    """A `vision_feature_layer` (hidden_states index, negative from the end) as a depth in 0..N."""
    return feature_layer if feature_layer >= 0 else num_layers + 1 + feature_layer
