"""LLaVA-NeXT (v1.6) family: anyres tiles → CLIP vision tower → (drop CLS) → projector → packing → LLM.

An image becomes a base tile (the whole image resized) plus the tiles of its best-fitting grid
pinpoint. Early exit at `layer` L takes `hidden_states[L]` of the CLIP tower for **every** tile,
exactly as LLaVA-1.5 does for its one image (0 = embeddings after `pre_layrnorm`; trained default
`vision_feature_layer` -2 → 23). Projection and packing are transformers' own: the projector per
token, then `pack_image_features` (grid reassembly, unpadding to the image's aspect ratio, one
learned `image_newline` per row, base tile first), so only the layer selection differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image
from transformers import LlavaNextForConditionalGeneration
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from vlmsafety.models.base import register_family
from vlmsafety.models.facts import Architecture, lm_summary
from vlmsafety.models.llava import LlavaAdapter


class LlavaNextEntry(NamedTuple):
    """What every layer needs of one image (a tuple, so `FamilyAdapter.entry_nbytes` counts it)."""

    states: torch.Tensor  # [N+1, tiles, tokens per tile (incl. CLS), D]: every hidden state of every tile
    image_size: torch.Tensor  # [2] long: the original (height, width), which decides unpadding


@register_family
class LlavaNextAdapter(LlavaAdapter):
    family = "llava_next"
    model_class = LlavaNextForConditionalGeneration
    _pixel_keys = ("pixel_values", "image_sizes")  # the packing reads the size from each encoded entry

    @classmethod
    def architecture(cls, config: Any) -> Architecture:
        n, default = cls.layer_range(config)
        v, t = config.vision_config, config.text_config
        side = v.image_size // v.patch_size  # patches per tile side
        base = side * side + (config.vision_feature_select_strategy != "default")
        # the largest packed grid: rows × cols patches plus one newline per row
        grid = max((h // v.image_size * side) * (w // v.image_size * side + 1) for h, w in config.image_grid_pinpoints)
        pins = ", ".join(f"{h}×{w}" for h, w in config.image_grid_pinpoints)
        return Architecture(
            family=cls.family, model_type=config.model_type, vision_layers=n, default_layer=default,
            layer_meaning="hidden_states[L] of the CLIP tower for every anyres tile (base tile included), CLS dropped",
            vision_width=v.hidden_size,
            projector=(
                f"{v.hidden_size} → {t.hidden_size} → {t.hidden_size} ({config.projector_hidden_act} MLP per token), "
                f"then packing with a learned image_newline [{t.hidden_size}]"
            ),
            image_tokens=(
                f"{base} (base tile) + up to {grid} (grid tiles unpadded to the aspect ratio + one newline per row) "
                f"= up to {base + grid} per image; pinpoints {pins}"
            ),
            language_model=lm_summary(t),
        )

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> list[LlavaNextEntry]:
        """One vision-tower pass over every tile of `images`; per image, all hidden states of its tiles."""
        inputs = self.processor.image_processor(list(images), return_tensors="pt")
        pixels, sizes = inputs["pixel_values"], inputs["image_sizes"]  # [B, max tiles, C, H, W], [B, 2]
        counts = [self._num_tiles(size) for size in sizes]
        tiles = torch.cat([p[:k] for p, k in zip(pixels, counts, strict=True)])  # [all tiles, C, H, W]
        vision_dtype = next(self._vision.parameters()).dtype
        out = self._vision(tiles.to(self.device, vision_dtype), output_hidden_states=True)
        stacked = torch.stack(out.hidden_states, dim=0)  # [N+1, all tiles, T, D]
        return [
            LlavaNextEntry(states, size)
            for states, size in zip(stacked.split(counts, dim=1), sizes, strict=True)
        ]

    def _num_tiles(self, image_size: torch.Tensor) -> int:
        cfg = self.model.config
        return image_size_to_num_patches(image_size, cfg.image_grid_pinpoints, cfg.vision_config.image_size)

    def image_features(self, entry: LlavaNextEntry, layer: int) -> torch.Tensor:
        """Layer `layer`'s features as the LLM consumes them: [image tokens, LM hidden]."""
        strategy = self.model.config.vision_feature_select_strategy
        hidden = entry.states[layer].to(self.device)  # [tiles, T, D]
        if strategy == "default":
            hidden = hidden[:, 1:]  # drop CLS
        projector_dtype = next(self._projector.parameters()).dtype
        projected = self._projector(hidden.to(projector_dtype))  # [tiles, T-1, LM hidden]
        packed, _ = self.model.model.pack_image_features(
            [projected], entry.image_size[None], vision_feature_select_strategy=strategy,
            image_newline=self.model.model.image_newline,
        )
        return packed[0]
