"""Load a VLM from a hub id, a local path or a built-in recipe — always through `from_pretrained`.

Devices: CUDA when present (`device_map="auto"` over every visible GPU), else CPU. dtype `auto` = on
CUDA the checkpoint's own (config.json `dtype`, formerly `torch_dtype`: float16 for the LLaVA
releases, bfloat16 for Llama 3.2 Vision and Qwen2.5-VL), on a CPU float32.
Quantization: bitsandbytes NF4 / int8 for the LM, vision tower and projector kept unquantized.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig
from transformers.utils import logging as hf_logging

from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import check_not_lfs_pointer
from vlmsafety.models.base import CHAT_DATE_FORMAT, DEFAULT_CHAT_DATE, FamilyAdapter, get_family
from vlmsafety.models.facts import check_config
from vlmsafety.models.source import missing_files_error, resolve_source

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(preference: str = "auto") -> torch.device:
    """`auto` = CUDA when present, else CPU."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise VlmSafetyError(f"device={preference} was asked for but no CUDA device is visible; use device=auto or cpu")
    return torch.device(preference)


def resolve_dtype(name: str, device: torch.device, config: Any = None, key: str = "model") -> torch.dtype:
    """`<key>.dtype` as a torch dtype. `auto`: on CUDA the checkpoint's own dtype (`config`'s), so the released
    weights load as published (bfloat16 when `config` is None or records none); on a CPU float32, where
    half-precision kernels are slow or missing."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return checkpoint_dtype(config) or torch.bfloat16
    if name not in _DTYPES:
        raise VlmSafetyError(f"{key}.dtype={name!r} is not supported; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load_dtype(name: str, device: torch.device, config: Any, key: str = "model") -> torch.dtype:
    """The dtype to load a checkpoint with (`resolve_dtype` on its config), for models and judges alike.

    Says so when `auto` on CUDA has no recorded dtype to follow and falls back to bfloat16.
    """
    dtype = resolve_dtype(name, device, config, key)
    if name == "auto" and device.type == "cuda" and checkpoint_dtype(config) is None:
        log.warning("%s.dtype=auto: the checkpoint's config.json records no dtype; loading it in %s (set %s.dtype "
                    "to choose)", key, dtype, key)
    return dtype


def checkpoint_dtype(config: Any) -> torch.dtype | None:
    """The dtype a checkpoint's config.json records (`dtype`; transformers 5 reads the older `torch_dtype` into it)."""
    value = getattr(config, "dtype", None) if config is not None else None
    if isinstance(value, str):
        value = _DTYPES.get(value.removeprefix("torch."))
    return value if value in _DTYPES.values() else None


def load_adapter(spec: Any, device: torch.device) -> FamilyAdapter:
    """Load model + processor for `spec` (a `model` config node) and wrap them in their family adapter.

    The config is read and checked against the YAML before any weight is loaded.
    """
    family = get_family(spec.family)
    hf_logging.disable_progress_bar()  # our own log line says what is loading
    source = resolve_source(spec)
    if spec.get("adapter"):  # checked before any weight is loaded
        adapter_folder(str(spec.adapter))
    common: dict[str, Any] = {"revision": spec.get("revision"), "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except OSError as e:  # no config.json in the folder or the cache
        raise missing_files_error(spec, source, e) from None
    check_config(spec, family, config, where=f"the config.json of {source}")
    dtype = load_dtype(str(spec.get("dtype", "auto")), device, config, key="model")
    placement = _placement(spec, device, dtype, family)
    try:
        processor = family.load_processor(source, **common)
        if spec.get("chat_template"):  # the YAML's override of the checkpoint's own template
            processor.chat_template = str(spec.chat_template)
        model = family.model_class.from_pretrained(
            source, config=config, dtype=dtype, use_safetensors=True, **common, **placement
        )
    except OSError as e:  # files missing from the folder or the cache
        raise missing_files_error(spec, source, e) from None
    except (ImportError, ValueError, RuntimeError) as e:
        if placement.get("quantization_config") is not None and "bitsandbytes" in str(e).lower():
            raise VlmSafetyError(
                f"model.quant={spec.quant} failed in bitsandbytes on {device}: {str(e).strip().splitlines()[0]}; "
                "set model.quant=none"
            ) from None
        raise
    if not placed_by_accelerate(model):
        model.to(device)
    if spec.get("adapter"):
        attach_adapter(model, str(spec.adapter))
    offloaded = sorted({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()} & {"cpu", "disk"})
    if device.type == "cuda" and offloaded:
        log.warning("%s does not fit on the GPU(s): part of it runs from %s (slow); try model.quant=4bit",
                    spec.get("name"), " and ".join(offloaded))
    model.eval()
    log.info(
        "loaded %s from %s (%s, quant %s, %.2f GiB)", spec.get("name"), source, dtype, spec.get("quant", "none"),
        model.get_memory_footprint() / 2**30,
    )
    adapter = family(model, processor, name=spec.get("name", source))
    adapter.chat_date = chat_date(spec)
    return adapter


def chat_date(spec: Any) -> str:
    """`model.chat_date`, checked: the date the chat template prints (Llama 3.x "Today Date: ..."), fixed per config."""
    value = spec.get("chat_date")
    if value is None:
        return DEFAULT_CHAT_DATE
    try:
        datetime.strptime(str(value), CHAT_DATE_FORMAT)
    except ValueError:
        raise VlmSafetyError(
            f"model.chat_date={value!r} is not a date in the chat template's format; write it like "
            f"{DEFAULT_CHAT_DATE!r} (day, abbreviated English month, year)"
        ) from None
    return str(value)


def adapter_folder(path: str) -> Path:
    """`model.adapter`'s folder, checked: it holds adapter_config.json and no Git LFS pointer in place of a file."""
    folder = Path(path).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise VlmSafetyError(
            f"model.adapter={path} has no adapter_config.json; point it at the adapter/ folder an unlearn job saved"
        )
    # An adapter committed to a repository and cloned without git-lfs holds pointers in place of its weights.
    for file in sorted(folder.iterdir()):
        if file.is_file():
            check_not_lfs_pointer(file)
    return folder


def attach_adapter(model: Any, path: str) -> None:
    """Load a saved LoRA adapter (an unlearn job's `adapter/` folder) into `model`, in place, unmerged.

    Unmerged, the model computes exactly what the trained model computed when the adapter was saved.
    """
    folder = adapter_folder(path)
    from peft import PeftModel

    PeftModel.from_pretrained(model, str(folder), is_trainable=False)  # injects the LoRA layers into `model`
    log.info("attached adapter %s", folder)


def _placement(spec: Any, device: torch.device, dtype: torch.dtype, family: type[FamilyAdapter]) -> dict[str, Any]:
    skip = list(spec.get("quant_skip_modules") or family.quant_skip_modules)
    return quantization_kwargs(str(spec.get("quant", "none")), device, dtype, skip, where="model.quant")


def quantization_kwargs(
    quant: str, device: torch.device, dtype: torch.dtype, skip_modules: list[str], where: str = "model.quant"
) -> dict[str, Any]:
    """`from_pretrained` arguments for device placement and bitsandbytes 4-bit (NF4, double quantization) or 8-bit.

    CUDA without a device index spreads the model over every visible GPU (`device_map="auto"`);
    `device=cuda:1` pins it to one. On CPU the model loads in place (quantized: onto the CPU).
    """
    quant = quant.lower()
    device_map: Any = "auto" if device.type == "cuda" and device.index is None else {"": str(device)}
    if quant in {"none", "null", "false"}:
        return {"device_map": device_map} if device.type == "cuda" else {}
    if quant not in {"4bit", "8bit"}:
        raise VlmSafetyError(f"{where}={quant!r} is not supported; use none, 4bit or 8bit")
    _check_bitsandbytes(quant, device, where)
    from transformers import BitsAndBytesConfig

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
    return {"quantization_config": qcfg, "device_map": device_map}


def _check_bitsandbytes(quant: str, device: torch.device, where: str = "model.quant") -> None:
    """One line, before any loading, when bitsandbytes cannot quantize on `device`."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise VlmSafetyError(
            f"{where}={quant} needs bitsandbytes, which is not installed: pip install 'bitsandbytes>=0.50', "
            f"or set {where}=none"
        )
    import bitsandbytes

    supported = set(getattr(bitsandbytes, "supported_torch_devices", {"cuda", "cpu"}))
    if device.type not in supported:
        raise VlmSafetyError(
            f"{where}={quant} is not available on device {device} (bitsandbytes {bitsandbytes.__version__} "
            f"supports {', '.join(sorted(supported))}); use device=auto or cpu, or set {where}=none"
        )


def placed_by_accelerate(model: Any) -> bool:
    """Whether `from_pretrained` already put the model on its device(s) (device map or quantization)."""
    return getattr(model, "hf_device_map", None) is not None or getattr(model, "is_quantized", False)
