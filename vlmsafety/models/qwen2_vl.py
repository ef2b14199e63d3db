"""Qwen2-VL and Qwen2.5-VL families: ViT over 14 px patches → 2×2 patch merger → LLM with multimodal RoPE.

`layer` L = the hidden state after ViT block L (0 = the patch embedding, N = `depth` = the trained
path); the patch merger (norm + MLP over 2×2 neighbours) then runs on it as usual. The states are
captured with hooks on transformers' own vision forward, so rotary position embeddings, per-image
attention (`cu_seqlens`) and, in Qwen2.5-VL, the window attention with its token permutation
are exactly the model's. Qwen2.5-VL runs its blocks in window order and undoes the permutation
after the merger; `encode_images` keeps each image's inverse permutation with its states.
Generation hands the merged features to transformers' `generate` through `mm_encoder_outputs`,
together with the processor's `image_grid_thw` and `mm_token_type_ids` for the 3-D positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from PIL import Image
from transformers import (
    ProcessorMixin,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.vision_utils import get_vision_window_index

from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings, register_family
from vlmsafety.models.facts import Architecture, lm_summary


class QwenEntry(NamedTuple):
    """What every layer needs of one image (a tuple, so `FamilyAdapter.entry_nbytes` counts it)."""

    states: torch.Tensor  # [N+1, patches, D] in the encoder's token order (Qwen2.5-VL: window order)
    grid_thw: torch.Tensor  # [3] long: temporal, height, width patches
    order: torch.Tensor  # [patches / merge²] long: merged token i of the LM input is merger output order[i]


def images_only(processor_class: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """`processor_class` without its video processor, which transformers builds only with torchvision.

    The project feeds images only, and torchvision is not a dependency: this keeps the checkpoint's
    own tokenizer, image processor (the PIL backend) and chat template, and the same token expansion
    and `mm_token_type_ids`. The class keeps the original name, so a saved folder reads as usual.
    """

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        # what Qwen2VLProcessor.__init__ sets, minus the video processor argument
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        self.video_processor = None
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    return type(processor_class.__name__, (processor_class,), {"__init__": __init__, "__doc__": images_only.__doc__})


@register_family
class Qwen2VLAdapter(FamilyAdapter):
    family = "qwen2_vl"
    model_class = Qwen2VLForConditionalGeneration
    processor_class: type[ProcessorMixin] = images_only(Qwen2VLProcessor)
    quant_skip_modules = ("model.visual", "lm_head")  # the ViT and its patch merger
    projector_modules = ("model.visual.merger",)

    def __init__(self, model: Any, processor: Any, name: str = "model"):
        super().__init__(model, processor, name)
        self._visual = model.model.visual

    @classmethod
    def load_processor(cls, source: str, **kwargs: Any) -> Any:
        return cls.processor_class.from_pretrained(source, **kwargs)

    # --- architecture facts ------------------------------------------------------------------
    @classmethod
    def layer_range(cls, config: Any) -> tuple[int, int]:
        n = config.vision_config.depth
        return n, n  # trained on every ViT block

    @classmethod
    def _widths(cls, config: Any) -> tuple[int, int]:
        """(ViT width, merger output width)."""
        return config.vision_config.embed_dim, config.vision_config.hidden_size

    @classmethod
    def _attention_note(cls, config: Any) -> str:
        return "every block attends over the whole image"

    @classmethod
    def architecture(cls, config: Any) -> Architecture:
        n, default = cls.layer_range(config)
        v = config.vision_config
        width, out = cls._widths(config)
        merge, px = v.spatial_merge_size, v.spatial_merge_size * v.patch_size
        return Architecture(
            family=cls.family, model_type=config.model_type, vision_layers=n, default_layer=default,
            layer_meaning=f"output of ViT block L (0 = patch embedding), then the patch merger; {cls._attention_note(config)}",
            vision_width=width,
            projector=f"patch merger: norm, then {merge}×{merge} neighbours {merge * merge * width} → {merge * merge * width} → {out} (GELU MLP)",
            image_tokens=(
                f"dynamic: one per {px}×{px} px after resizing to multiples of {px} px "
                f"(e.g. 448×448 → {(448 // px) ** 2})"
            ),
            language_model=lm_summary(config.text_config),
        )

    # --- vision ------------------------------------------------------------------------------
    @property
    def _vision_device(self) -> torch.device:
        return self._visual.patch_embed.proj.weight.device

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> list[QwenEntry]:
        """One ViT pass over `images` (transformers' forward, hooked); per image, every block's state."""
        inputs = self.processor.image_processor(images=list(images), return_tensors="pt")
        pixels, grids = inputs["pixel_values"], inputs["image_grid_thw"]  # [all patches, C·T·P·P], [B, 3]
        states: list[torch.Tensor] = []
        blocks = self._visual.blocks
        handles = [blocks[0].register_forward_pre_hook(lambda m, args: states.append(args[0]))]
        handles += [b.register_forward_hook(lambda m, args, out: states.append(out)) for b in blocks]
        try:
            self._visual(pixels.to(self._vision_device, self._visual.dtype), grid_thw=grids.to(self._vision_device))
        finally:
            for h in handles:
                h.remove()
        stacked = torch.stack(states)  # [N+1, all patches, D]
        counts = grids.prod(-1).tolist()
        return [
            QwenEntry(s, g, self._merge_order(g).to(s.device))
            for s, g in zip(stacked.split(counts, dim=1), grids, strict=True)
        ]

    def _merge_order(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Where each merged token of the LM input sits among the merger's outputs (Qwen2-VL: in place)."""
        return torch.arange(int(grid_thw.prod()) // self._visual.spatial_merge_size**2)

    def image_features(self, entry: QwenEntry, layer: int) -> torch.Tensor:
        """Layer `layer`'s features as the LLM consumes them: [merged tokens, LM hidden]."""
        hidden = entry.states[layer].to(self._vision_device, self._visual.dtype)  # [patches, D]
        merged = self._visual.merger(hidden)  # [patches / merge², LM hidden]
        return merged[entry.order.to(merged.device)]

    def vision_tokens(self, inputs: Any) -> int:
        """Patches the ViT processed: `pixel_values` holds one row per patch ([patches, C·T·P·P])."""
        pixels = inputs.get("pixel_values")
        return 0 if pixels is None else int(pixels.shape[0])

    # --- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image | None],
        encoded: Sequence[Any | None],
        layer: int | Sequence[int],
        settings: GenerationSettings,
    ) -> list[Generation]:
        inputs = self.model_inputs(prompts, images)
        layers = self.row_layers(layer, len(prompts))
        kwargs: dict[str, Any] = {
            key: inputs[key].to(self.device) for key in ("input_ids", "attention_mask", "mm_token_type_ids")
        }
        entries = [(e, r) for e, r in zip(encoded, layers, strict=True) if e is not None]
        if entries:
            grids = torch.stack([e.grid_thw for e, _ in entries])
            if not torch.equal(grids, inputs["image_grid_thw"]):
                raise RuntimeError(f"encoded image grids {grids.tolist()} differ from the processor's")
            kwargs["image_grid_thw"] = inputs["image_grid_thw"].to(self.device)
            # per image: independent of batch-mates
            kwargs["mm_encoder_outputs"] = self._encoder_outputs([e for e, _ in entries], [r for _, r in entries])
        sequences = self.model.generate(**kwargs, **self._generate_kwargs(settings))
        return self._decode(sequences, inputs["input_ids"].shape[1])

    @contextmanager
    def lm_inputs(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None], encoded: Sequence[Any | None], layer: int
    ) -> Iterator[dict[str, Any]]:
        # with an image: the merged features and the grids the 3-D (mrope) positions are computed from
        yield self._precomputed_lm_inputs(
            prompts, images, encoded, layer, ("input_ids", "attention_mask", "mm_token_type_ids"), ("image_grid_thw",)
        )

    @contextmanager
    def layer_inputs(
        self, inputs: dict[str, torch.Tensor], encoded: Sequence[Any], layers: Sequence[int]
    ) -> Iterator[dict[str, Any]]:
        """The batch without its pixels (grids and token types kept: they place the 3-D positions),
        with `generate`'s precomputed features at each row's layer."""
        grids = torch.stack([e.grid_thw for e in encoded]).cpu()
        if not torch.equal(grids, inputs["image_grid_thw"].cpu()):
            raise RuntimeError(f"encoded image grids {grids.tolist()} differ from the processor's")
        kept = {k: v for k, v in inputs.items() if k != "pixel_values"}
        yield {**kept, "mm_encoder_outputs": self._encoder_outputs(encoded, layers)}


@register_family
class Qwen25VLAdapter(Qwen2VLAdapter):
    family = "qwen2_5_vl"
    model_class = Qwen2_5_VLForConditionalGeneration
    processor_class = images_only(Qwen2_5_VLProcessor)

    @classmethod
    def _widths(cls, config: Any) -> tuple[int, int]:
        return config.vision_config.hidden_size, config.vision_config.out_hidden_size

    @classmethod
    def _attention_note(cls, config: Any) -> str:
        v = config.vision_config
        return f"blocks {list(v.fullatt_block_indexes)} (0-based) attend over the whole image, the others within {v.window_size} px windows"

    def _merge_order(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Qwen2.5-VL runs blocks in window order; merger outputs go back with the inverse permutation."""
        v = self._visual
        window_index, _ = get_vision_window_index(
            grid_thw[None], spatial_merge_size=v.spatial_merge_size, window_size=v.window_size, patch_size=v.patch_size
        )
        return torch.argsort(window_index)
