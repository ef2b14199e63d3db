"""Load a VLM from a hub id, a local path or a built-in recipe — always through `from_pretrained`."""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import AutoProcessor
from transformers.utils import logging as hf_logging

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.base import FamilyAdapter, get_family
from vlmsafety.models.builtin import ensure_builtin

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(preference: str = "auto") -> torch.device:
    """`auto` = CUDA when present, else CPU."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise VlmSafetyError(f"device={preference} was asked for but no CUDA device is visible; use device=auto or cpu")
    return torch.device(preference)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise VlmSafetyError(f"model.dtype={name!r} is not supported; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def resolve_source(spec: Any) -> str:
    """Where to load from: `model.path` if set, else the built-in recipe, else the hub id."""
    if spec.get("path"):
        return str(spec.path)
    if spec.get("builtin"):
        return str(ensure_builtin(spec.builtin))
    if spec.get("id"):
        return str(spec.id)
    raise VlmSafetyError(f"model {spec.get('name')!r} sets none of model.path, model.builtin or model.id")


def load_adapter(spec: Any, device: torch.device) -> FamilyAdapter:
    """Load model + processor for `spec` (a `model` config node) and wrap them in their family adapter."""
    family = get_family(spec.family)
    hf_logging.disable_progress_bar()  # our own log line says what is loading
    source = resolve_source(spec)
    dtype = resolve_dtype(spec.get("dtype", "auto"), device)
    common: dict[str, Any] = {"revision": spec.get("revision"), "trust_remote_code": False}
    processor = AutoProcessor.from_pretrained(source, **common)
    model = family.model_class.from_pretrained(
        source, dtype=dtype, use_safetensors=True, **common, **_placement(spec, device, dtype, family)
    )
    if not placed_by_accelerate(model):
        model.to(device)
    model.eval()
    log.info("loaded %s from %s (%s, %s)", spec.get("name"), source, dtype, spec.get("quant", "none"))
    adapter = family(model, processor, name=spec.get("name", source))
    _check_declared(spec, adapter)
    return adapter


def _placement(spec: Any, device: torch.device, dtype: torch.dtype, family: type[FamilyAdapter]) -> dict[str, Any]:
    skip = list(spec.get("quant_skip_modules") or family.quant_skip_modules)
    return quantization_kwargs(str(spec.get("quant", "none")), device, dtype, skip, where="model.quant")


def quantization_kwargs(
    quant: str, device: torch.device, dtype: torch.dtype, skip_modules: list[str], where: str = "model.quant"
) -> dict[str, Any]:
    """`from_pretrained` kwargs for bitsandbytes 4-bit (NF4, double quantization) or 8-bit; {} for none."""
    quant = quant.lower()
    if quant in {"none", "null", "false"}:
        return {}
    if quant not in {"4bit", "8bit"}:
        raise VlmSafetyError(f"{where}={quant!r} is not supported; use none, 4bit or 8bit")
    try:
        from transformers import BitsAndBytesConfig
    except ImportError as e:  # pragma: no cover
        raise VlmSafetyError(f"{where}={quant} needs bitsandbytes: pip install bitsandbytes ({e})") from None
    if quant == "4bit":
        qcfg = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else dtype,
            llm_int8_skip_modules=skip_modules,
        )
    else:
        qcfg = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)
    device_map: Any = "auto" if device.type == "cuda" else {"": str(device)}
    return {"quantization_config": qcfg, "device_map": device_map}


def placed_by_accelerate(model: Any) -> bool:
    """Whether `from_pretrained` already put the model on its device(s) (device map or quantization)."""
    return getattr(model, "hf_device_map", None) is not None or getattr(model, "is_quantized", False)


def _check_declared(spec: Any, adapter: FamilyAdapter) -> None:
    """The YAML's declared layer count / default must match the checkpoint's own config."""
    for key, actual in (("vision_layers", adapter.num_layers), ("default_layer", adapter.default_layer)):
        declared = spec.get(key)
        if declared is not None and int(declared) != actual:
            raise VlmSafetyError(
                f"model {spec.get('name')!r} declares {key}={declared} but its config.json gives {actual}; "
                f"fix conf/model/{spec.get('name')}.yaml"
            )
