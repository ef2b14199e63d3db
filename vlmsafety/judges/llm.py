"""What every LLM judge shares: its checkpoint (named like a model YAML), loading once, batching.

A judge YAML names its checkpoint the way a model YAML does: `id` (hub id), `path` (a local
`save_pretrained` folder; overrides the rest), `builtin` (a tiny stand-in built locally),
`revision`, `dtype`, `quant` (none / 4bit / 8bit through the same bitsandbytes settings as
models) and `device` (`${device}` = the run's device). `dtype: auto` resolves as for models: on
CUDA the checkpoint's own (its config.json `dtype`), on a CPU float32. The worker caches judges per process, so a
sweep loads each judge model once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig

from vlmsafety.errors import VlmSafetyError
from vlmsafety.judges.base import Judge
from vlmsafety.models.loading import (
    load_dtype,
    placed_by_accelerate,
    quantization_kwargs,
    resolve_device,
    resolve_source,
)

log = logging.getLogger(__name__)


class LLMJudge(Judge):
    """A judge backed by one transformers checkpoint, loaded at construction on the run's device."""

    model_class: ClassVar[str]  # transformers class name `from_pretrained` is called on
    processor_class: ClassVar[str] = "AutoTokenizer"  # or "AutoProcessor" for multimodal judges
    quant_skip_modules: ClassVar[tuple[str, ...]] = ("lm_head",)

    def __init__(
        self,
        name: str,
        id: str | None = None,  # the YAML key model configs use for a hub id
        path: str | None = None,
        builtin: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        quant: str = "none",
        device: str = "auto",
        batch_size: int = 8,
        convention: str = "vlmsafety",
    ):
        super().__init__(name, convention)
        if not (path or builtin or id):
            raise VlmSafetyError(f"judge.{name} sets none of path, builtin or id; name the judge's checkpoint")
        self.batch_size = max(1, int(batch_size))
        self.device = resolve_device(str(device))
        spec = OmegaConf.create({"name": name, "id": id, "path": path, "builtin": builtin})
        self.source = resolve_source(spec, key=f"judge.{name}")
        common: dict[str, Any] = {"revision": revision, "trust_remote_code": False}
        config = self._guarded(lambda: AutoConfig.from_pretrained(self.source, **common))
        dtype = load_dtype(str(dtype), self.device, config, key=f"judge.{name}")
        self.model, self.processor = self._guarded(lambda: self._load(common, config, dtype, str(quant)))

    def _guarded(self, load: Callable[[], Any]) -> Any:
        """`load()`, with a checkpoint's missing files as one line."""
        try:
            return load()
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise VlmSafetyError(
                f"judge.{self.name}: cannot load {self.source!r} ({first}); set judge.{self.name}.path to a local copy"
            ) from None

    def _load(self, common: dict[str, Any], config: Any, dtype: torch.dtype, quant: str) -> tuple[Any, Any]:
        import transformers

        processor = getattr(transformers, self.processor_class).from_pretrained(self.source, **common)
        model = getattr(transformers, self.model_class).from_pretrained(
            self.source, config=config, dtype=dtype, use_safetensors=True, **common,
            **quantization_kwargs(quant, self.device, dtype, list(self.quant_skip_modules), f"judge.{self.name}.quant"),
        )
        if not placed_by_accelerate(model):
            model.to(self.device)
        model.eval()
        tokenizer = self.tokenizer_of(processor)
        tokenizer.padding_side = "left"  # the verdict is read at the last position of every row
        if tokenizer.pad_token is None:  # Llama-2 tokenizers ship without one
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        log.info("judge %s: loaded %s (%s, quant %s) on %s", self.name, self.source, dtype, quant, self.device)
        return model, processor

    @staticmethod
    def tokenizer_of(processor: Any) -> Any:
        return getattr(processor, "tokenizer", processor)

    @property
    def input_device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def batches(self, indices: Sequence[int]) -> Iterator[list[int]]:
        for k in range(0, len(indices), self.batch_size):
            yield list(indices[k : k + self.batch_size])


def next_token_logits(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits at every position of left-padded `inputs`: [B, T, V] (float32).

    Position ids follow the attention mask as in `generate`, so a left-padded row scores exactly
    as it would alone.
    """
    mask = inputs["attention_mask"]
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, T]
    out = model(**inputs, position_ids=position_ids, use_cache=False)
    return out.logits.float()


def extend_inputs(inputs: dict[str, torch.Tensor], extra: Sequence[int]) -> dict[str, torch.Tensor]:
    """Append the same token ids to every row of left-padded `inputs` (masks grow with them).

    Per-token tensors other than the ids and the mask (Mllama's cross_attention_mask, [B, T, ...])
    repeat their last position, as Mllama's own `generate` does for new tokens.
    """
    if not extra:
        return inputs
    ids = inputs["input_ids"]  # [B, T]
    batch, length = ids.shape
    add = torch.tensor(list(extra), dtype=ids.dtype, device=ids.device).expand(batch, -1)  # [B, E]
    out = dict(inputs)
    out["input_ids"] = torch.cat([ids, add], dim=1)
    out["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(add)], dim=1)
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask") or not isinstance(value, torch.Tensor):
            continue
        if value.dim() >= 2 and value.shape[0] == batch and value.shape[1] == length:
            tail = value[:, -1:].expand(-1, len(extra), *value.shape[2:])
            out[key] = torch.cat([value, tail], dim=1)
    return out
