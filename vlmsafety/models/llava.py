"""LLaVA-1.5 family: CLIP vision tower → (drop CLS) → two-layer projector → LLM.

`layer` L indexes the vision tower's `hidden_states` tuple (0 = embeddings after `pre_layrnorm`,
L = output of block L); the trained default is `vision_feature_layer` (-2 → N-1 = 23 for
LLaVA-1.5). The projector, the feature-select strategy and the LLM are left unchanged; the
projected features reach the LLM through transformers' `mm_encoder_outputs`, so prompt handling
and every forward pass are transformers' own. Greedy answers are decoded by `decoding.greedy_decode`
(transformers' steps, a finished row leaving the batch; the same tokens as `generate`:
tests/test_decoding.py); sampling uses `generate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings, register_family
from vlmsafety.models.decoding import greedy_decode
from vlmsafety.models.facts import Architecture, lm_summary, vision_default


@register_family
class LlavaAdapter(FamilyAdapter):
    family = "llava"
    model_class = LlavaForConditionalGeneration
    row_dropping = True  # the image features enter in the prefill step only (mm_encoder_outputs)

    def __init__(self, model: Any, processor: Any, name: str = "model"):
        super().__init__(model, processor, name)
        self.layer_range(model.config)  # refuses multi-layer feature selection before anything runs
        self._vision = model.model.vision_tower

    # processor outputs that carry the pixels: left out when the features come precomputed
    _pixel_keys: tuple[str, ...] = ("pixel_values",)

    @property
    def _projector(self) -> torch.nn.Module:
        # looked up on every use: with unlearn.train.train_projector PEFT swaps in a wrapper that runs
        # the trained copy (or, adapters disabled, the original)
        return self.model.model.multi_modal_projector

    @classmethod
    def layer_range(cls, config: Any) -> tuple[int, int]:
        if not isinstance(config.vision_feature_layer, int):
            raise VlmSafetyError(
                f"vision_feature_layer={config.vision_feature_layer} concatenates several layers; "
                "early exit is defined for single-layer LLaVA checkpoints only"
            )
        n = config.vision_config.num_hidden_layers
        return n, vision_default(config.vision_feature_layer, n)

    @classmethod
    def architecture(cls, config: Any) -> Architecture:
        n, default = cls.layer_range(config)
        v, t = config.vision_config, config.text_config
        patches = (v.image_size // v.patch_size) ** 2
        cls_note = "CLS dropped" if config.vision_feature_select_strategy == "default" else "CLS kept"
        tokens = patches + (config.vision_feature_select_strategy != "default")
        return Architecture(
            family=cls.family, model_type=config.model_type, vision_layers=n, default_layer=default,
            layer_meaning=f"hidden_states[L] of the CLIP tower (0 = embeddings after pre_layrnorm), {cls_note}",
            vision_width=v.hidden_size,
            projector=f"{v.hidden_size} → {t.hidden_size} → {t.hidden_size} ({config.projector_hidden_act} MLP per token)",
            image_tokens=f"{tokens} per image ({v.image_size} px, {v.patch_size} px patches, {cls_note})",
            language_model=lm_summary(t),
        )

    @property
    def image_tokens_at_least(self) -> int:
        """What the processor expands the placeholder to, computed as transformers' LlavaProcessor does
        (`_get_num_multimodal_tokens`): patches of the crop, plus its additional (CLS) tokens, less one under the
        `default` feature strategy (LLaVA-1.5: 576). Every LLaVA image takes exactly this many; a LLaVA-NeXT
        image takes as many for its base view, and its high-resolution tiles come on top."""
        crop = getattr(self.processor.image_processor, "crop_size", None)
        patch = getattr(self.processor, "patch_size", None)
        if not crop or not patch:
            return 1
        tokens = (int(crop["height"]) // patch) * (int(crop["width"]) // patch)
        tokens += int(getattr(self.processor, "num_additional_image_tokens", 0) or 0)
        if getattr(self.processor, "vision_feature_select_strategy", None) == "default":
            tokens -= 1
        return max(1, tokens)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """Per image: every hidden state of the vision tower, [N+1, tokens (incl. CLS), D]."""
        pixels = self.processor.image_processor(list(images), return_tensors="pt")["pixel_values"]
        vision_dtype = next(self._vision.parameters()).dtype
        out = self._vision(pixels.to(self.device, vision_dtype), output_hidden_states=True)
        stacked = torch.stack(out.hidden_states, dim=1)  # [B, N+1, T, D]
        return list(stacked.unbind(0))

    def image_features(self, entry: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer `layer`'s features as the LLM consumes them: [image tokens, LM hidden]."""
        hidden = entry[layer].to(self.device)  # [T, D]
        if self.model.config.vision_feature_select_strategy == "default":
            hidden = hidden[1:]  # drop CLS
        projector_dtype = next(self._projector.parameters()).dtype
        return self._projector(hidden.to(projector_dtype))

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
        kwargs: dict[str, Any] = {}
        layers = self.row_layers(layer, len(prompts))
        # features per image, so a row's features do not depend on its batch-mates or their layers
        pairs = [(e, r) for e, r in zip(encoded, layers, strict=True) if e is not None]
        if pairs:
            kwargs["mm_encoder_outputs"] = self._encoder_outputs([e for e, _ in pairs], [r for _, r in pairs])
        input_ids, attention_mask = inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device)
        if self.drops_finished_rows(settings):
            new = greedy_decode(self.model, input_ids, attention_mask, settings.max_new_tokens, prefill=kwargs)
            return self._decode(new, 0)
        sequences = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs, **self._generate_kwargs(settings)
        )
        return self._decode(sequences, input_ids.shape[1])

    @contextmanager
    def lm_inputs(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None], encoded: Sequence[Any | None], layer: int
    ) -> Iterator[dict[str, Any]]:
        yield self._precomputed_lm_inputs(prompts, images, encoded, layer, ("input_ids", "attention_mask"))

    @contextmanager
    def layer_inputs(
        self, inputs: dict[str, torch.Tensor], encoded: Sequence[Any], layers: Sequence[int]
    ) -> Iterator[dict[str, Any]]:
        """The batch without its pixels, with `generate`'s precomputed features at each row's layer."""
        kept = {k: v for k, v in inputs.items() if k not in self._pixel_keys}
        yield {**kept, "mm_encoder_outputs": self._encoder_outputs(encoded, layers)}
