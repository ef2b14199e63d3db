"""Which parameters train, the frozen reference, saving, and getting the original model back.

- `lora` (default): PEFT LoRA adapters on language-model modules only (a regex over module names;
  the vision tower is never adapted). The reference for KL / NPO is the same model with its
  adapters disabled (`peft_model.disable_adapter()`), not a copy. On a 4-bit base (model.quant=4bit)
  this is QLoRA. `train_projector: true` also trains a copy of the projector (PEFT modules_to_save).
  Afterwards `unload()` takes the LoRA layers out again: the base weights were never touched (a
  4-bit base is still reloaded: bitsandbytes keeps state from earlier forwards, see `restore`).
- `full`: every language-model weight trains (vision tower and projector frozen unless
  `train_projector`). The reference must then be a frozen deep copy of the original, so memory for
  weights doubles; the trained base cannot be restored and is dropped from the worker's cache.
"""

from __future__ import annotations

import copy
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.base import FamilyAdapter
from vlmsafety.ui import DETAIL
from vlmsafety.unlearn.batches import Batch, forward_logits

log = logging.getLogger(__name__)

MODES = ("lora", "full")


@dataclass
class Trainable:
    """The model the loop trains, its trainable parameters and the way back to the original."""

    adapter: FamilyAdapter
    model: torch.nn.Module  # what the loop calls: the PeftModel (lora) or the base model (full)
    params: list[torch.nn.Parameter]
    mode: str
    reference_model: torch.nn.Module | None = None  # full fine-tuning's frozen copy
    trains_vision_side: bool = False  # the projector trains (features after it change)
    gradient_checkpointing: bool = False  # enabled by setup, disabled by restore
    _requires_grad: dict[str, bool] = field(default_factory=dict)

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.params)

    def current(self, batch: Batch) -> torch.Tensor:
        return forward_logits(self.model, batch, self.adapter.device, self.adapter)

    def reference(self) -> Callable[[Batch], torch.Tensor]:
        """batch → answer-position logits of the original model, without gradients."""

        def logits(batch: Batch) -> torch.Tensor:
            with torch.no_grad():
                if self.mode == "lora":
                    with self.model.disable_adapter():
                        return forward_logits(self.model, batch, self.adapter.device, self.adapter)
                assert self.reference_model is not None
                if batch.layers is not None:  # the family adapter feeds layers to ITS model, not to the copy
                    raise VlmSafetyError(
                        "a reference pass at sampled vision layers needs unlearn.train.mode=lora (full fine-tuning "
                        "keeps a copy of the model that the family adapter cannot feed)"
                    )
                return forward_logits(self.reference_model, batch, self.adapter.device)

        return logits

    @property
    def has_reference(self) -> bool:
        """Whether the original model can be read: always with LoRA, with a copy under full fine-tuning."""
        return self.mode == "lora" or self.reference_model is not None

    def save(self, out_dir: Path) -> list[Path]:
        """LoRA: the adapter (adapter_model.safetensors + adapter_config.json); full: the whole model."""
        if self.mode == "lora":
            self.model.save_pretrained(out_dir / "adapter", safe_serialization=True)
            return [out_dir / "adapter"]
        self.adapter.model.save_pretrained(out_dir / "model", safe_serialization=True)
        self.adapter.processor.save_pretrained(out_dir / "model")
        return [out_dir / "model"]

    def save_merged(self, out_dir: Path) -> Path:
        """LoRA merged into the base weights, saved as a full checkpoint; the base cannot be restored after."""
        if self.mode != "lora":
            raise VlmSafetyError("unlearn.train.merge applies to LoRA only (full fine-tuning already saves the whole model)")
        merged = self.model.merge_and_unload()
        merged.save_pretrained(out_dir / "merged", safe_serialization=True)
        self.adapter.processor.save_pretrained(out_dir / "merged")
        self.mode = "merged"
        return out_dir / "merged"

    def restore(self) -> bool:
        """Put the base model back as loaded; True when its weights are exactly the original ones."""
        model = self.adapter.model
        if self.gradient_checkpointing:
            model.gradient_checkpointing_disable()
            self.gradient_checkpointing = False
        clean = False
        if self.mode == "lora":
            self.model.unload()  # the original modules replace the LoRA-wrapped ones, in place
            # not clean: a trained modules_to_save copy stays in; and on a 4-bit base the weights come
            # back equal but bitsandbytes keeps per-layer state from earlier forwards (on CPU it repacks
            # weights on first use), so generations could differ from a fresh load: reload instead
            clean = not self.trains_vision_side and not getattr(model, "is_quantized", False)
        self.reference_model = None
        for name, p in model.named_parameters():
            p.requires_grad_(self._requires_grad.get(name, p.requires_grad))
        model.eval()
        return clean


def setup(adapter: FamilyAdapter, cfg: Any, needs_reference: bool) -> Trainable:
    """Freeze everything, then make the configured parameters trainable (`unlearn.train` node)."""
    mode = str(cfg.get("mode", "lora"))
    if mode not in MODES:
        raise VlmSafetyError(f"unlearn.train.mode={mode!r} is not valid; use one of {', '.join(MODES)}")
    model = adapter.model
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    projector = list(adapter.projector_modules) if cfg.get("train_projector") else []
    if mode == "lora":
        trainable = _lora(adapter, cfg.get("lora") or {}, projector)
    else:
        if getattr(model, "is_quantized", False):
            raise VlmSafetyError("unlearn.train.mode=full needs unquantized weights; set model.quant=none or use mode=lora (QLoRA)")
        reference = None
        if needs_reference:  # before any weight changes; doubles the memory held by weights
            reference = copy.deepcopy(model).eval()
            for p in reference.parameters():
                p.requires_grad_(False)
        prefixes = [adapter.language_model_prefix, "lm_head", *projector]
        params = [p for n, p in model.named_parameters() if any(n.startswith(pre) for pre in prefixes)]
        for p in params:
            p.requires_grad_(True)
        trainable = Trainable(adapter, model, params, mode, reference_model=reference)
    trainable.trains_vision_side = bool(projector)
    trainable._requires_grad = flags
    if cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable.gradient_checkpointing = True
    trainable.model.train()
    log.info("unlearning trains %d parameters (%s%s%s)", trainable.n_trainable, mode,
             " on a 4-bit base = QLoRA" if getattr(model, "is_quantized", False) else "",
             ", projector included" if projector else "", extra=DETAIL)
    return trainable


def _lora(adapter: FamilyAdapter, cfg: Any, projector: list[str]) -> Trainable:
    from peft import LoraConfig, get_peft_model

    target = str(cfg.get("target_modules") or default_target(adapter))
    matched = [n for n, _ in adapter.model.named_modules() if re.fullmatch(target, n)]
    if not matched:
        raise VlmSafetyError(f"unlearn.train.lora.target_modules={target!r} matches no module of {adapter.name}")
    outside = [n for n in matched if not n.startswith(adapter.language_model_prefix + ".")]
    if outside:
        raise VlmSafetyError(
            f"unlearn.train.lora.target_modules matches {outside[0]!r}, outside the language model "
            f"({adapter.language_model_prefix}); only language-model modules take LoRA (train_projector for the projector)"
        )
    config = LoraConfig(
        r=int(cfg.get("r", 16)), lora_alpha=int(cfg.get("alpha", 32)), lora_dropout=float(cfg.get("dropout", 0.05)),
        target_modules=target, modules_to_save=projector or None, bias="none",
    )
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing (peft's to fix)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
        peft_model = get_peft_model(adapter.model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    return Trainable(adapter, peft_model, params, "lora")


def default_target(adapter: FamilyAdapter) -> str:
    """Attention and MLP projections of the language model (Llama-style names, as every family here uses)."""
    prefix = re.escape(adapter.language_model_prefix)
    return rf"{prefix}\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def count_parameters(module: torch.nn.Module) -> int:
    """Parameters of `module` as the architecture has them (bitsandbytes 4-bit weights unpacked)."""
    total = 0
    for p in module.parameters():
        shape = getattr(getattr(p, "quant_state", None), "shape", None)
        total += int(torch.Size(shape).numel()) if shape is not None else p.numel()
    return total
