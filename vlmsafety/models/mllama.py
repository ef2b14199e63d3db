"""Llama 3.2 Vision (Mllama) family: tiled local encoder → global gated encoder → projector → cross-attention LM.

The local encoder has N blocks (32 in the real model). Let S[k] be the local state after k blocks
(S[0] = the input of block 1, after `layernorm_pre` and patch padding). Early exit at `layer` L runs
local blocks 1..L, then `layernorm_post`, the post-tile positional embedding and the global blocks
as usual; the projector input concatenates the global output with the local states at
`intermediate_layers_indices`, slot i taking S[min(i, L)].

The reference is Meta's encoder (llama-models `models/llama3/multimodal/model.py`,
`ImageTransformer.forward`), which appends a block's *input* before running block idx, so slot i
holds S[i]: the state after i blocks. transformers 5.x's `MllamaVisionEncoder` leaves the
embeddings out of `hidden_states`, so its own forward fills slot i with S[i+1], one block deeper
(PR #39785 had put the input first once). This module follows Meta whatever transformers does: at
L = N it is Meta's computation, not transformers' own vision forward (docs/models.md). Code that
runs a Mllama checkpoint's own forward (the Llama Guard 3 Vision judge) reads the same features
through `metas_vision`.

`encode_images` runs the local encoder once and keeps S[0..N] per image; `generate` runs only the
global blocks for layer L, then hands the result to transformers' own `generate` by standing in
for the vision model's forward, so masks, the cross-attention KV cache and decoding stay HF's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import MllamaForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.mllama.modeling_mllama import _prepare_aspect_ratio_attention_mask

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.base import FamilyAdapter, Generation, GenerationSettings, register_family
from vlmsafety.models.facts import Architecture, lm_summary

_IMAGE_KEYS = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")  # the processor's vision inputs


class MllamaEntry(NamedTuple):
    """What every layer needs of one image (a tuple, so `FamilyAdapter.entry_nbytes` counts it)."""

    states: torch.Tensor  # [N+1, tiles * padded patches, D]: S[0..N]
    aspect_ratio_id: torch.Tensor  # [1] long: index of the image's tile layout (0 = padding)
    aspect_ratio_mask: torch.Tensor  # [tiles] long: 1 for tiles the image covers


@register_family
class MllamaAdapter(FamilyAdapter):
    family = "mllama"
    model_class = MllamaForConditionalGeneration
    quant_skip_modules = ("model.vision_model", "model.multi_modal_projector", "lm_head")

    def __init__(self, model: Any, processor: Any, name: str = "model"):
        super().__init__(model, processor, name)
        self._vision = model.model.vision_model
        self._projector = model.model.multi_modal_projector
        self._blank: MllamaEntry | None = None  # the processor's padding image, encoded on first need

    @classmethod
    def layer_range(cls, config: Any) -> tuple[int, int]:
        n = config.vision_config.num_hidden_layers
        return n, n  # Mllama is trained on the full local encoder

    @classmethod
    def architecture(cls, config: Any) -> Architecture:
        n, default = cls.layer_range(config)
        v, t = config.vision_config, config.text_config
        per_tile = (v.image_size // v.patch_size) ** 2 + 1  # patches + CLS
        slots = ", ".join(f"{i}→S[{i}]" for i in v.intermediate_layers_indices)
        return Architecture(
            family=cls.family, model_type=config.model_type, vision_layers=n, default_layer=default,
            layer_meaning=(
                f"local blocks 1..L, then layernorm_post, post-tile embedding and the {v.num_global_layers} global "
                f"blocks; intermediate slots ({slots}, Meta's convention) take S[min(i, L)]"
            ),
            vision_width=v.hidden_size,
            projector=(
                f"concat(global output {v.hidden_size}, {len(v.intermediate_layers_indices)} local states) = "
                f"{v.vision_output_dim} → {t.hidden_size} (Linear)"
            ),
            image_tokens=(
                f"one <|image|> token; cross-attention over up to {v.max_num_tiles} tiles × {per_tile} = "
                f"{v.max_num_tiles * per_tile} states ({v.image_size} px tiles)"
            ),
            language_model=lm_summary(t) + f", cross-attention layers {list(t.cross_attention_layers)}",
        )

    @property
    def _vision_device(self) -> torch.device:
        return self._vision.patch_embedding.weight.device  # may differ from the LM's under a device map

    # --- vision: local encoder (once per image) -------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> list[MllamaEntry]:
        """One local-encoder pass over `images`; per image, every local state S[0..N]."""
        inputs = self.processor(images=[[img] for img in images], return_tensors="pt")
        return self._encode(inputs["pixel_values"], inputs["aspect_ratio_ids"], inputs["aspect_ratio_mask"])

    def _encode(self, pixel_values: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> list[MllamaEntry]:
        # pixel_values: [B, 1, tiles, C, H, W]; ids: [B, 1]; mask: [B, 1, tiles] (one image per prompt)
        if pixel_values.shape[1] != 1:
            raise VlmSafetyError(f"{self.name}: expected one image per prompt, got {pixel_values.shape[1]}")
        device = self._vision_device
        hidden, attention_mask = self._embed(pixel_values, ids.to(device), mask.to(device))
        states = [hidden]  # S[0]: [B, tiles * P, D]
        for block in self._vision.transformer.layers:
            hidden = block(hidden, attention_mask=attention_mask)
            states.append(hidden)
        stacked = torch.stack(states, dim=1)  # [B, N+1, tiles * P, D]
        return [
            MllamaEntry(s, i.to(device), m[0].to(device))
            for s, i, m in zip(stacked.unbind(0), ids, mask, strict=True)
        ]

    def _embed(
        self, pixel_values: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """S[0] and the local attention mask: `MllamaVisionModel.forward` up to its local encoder."""
        v = self._vision
        batch, media, tiles, channels, height, width = pixel_values.shape
        pixel_values = pixel_values.reshape(batch * media * tiles, channels, height, width)
        ids = ids.reshape(batch * media, -1)  # [B, 1]

        weight = v.patch_embedding.weight
        hidden = v.patch_embedding(pixel_values.to(weight.device, weight.dtype))  # [B*tiles, D, h, w]
        hidden = hidden.flatten(2).transpose(1, 2)  # [B*tiles, patches, D]
        _, patches, dim = hidden.shape
        hidden = hidden.reshape(batch * media, tiles, -1, dim)
        hidden = v.pre_tile_positional_embedding(hidden, ids)
        hidden = hidden.reshape(batch * media * tiles, patches, dim)
        hidden = v.apply_class_embedding(hidden)  # [B*tiles, patches+1, D]
        patches += 1
        hidden = hidden.reshape(batch * media, tiles, patches, dim)
        hidden = v.gated_positional_embedding(hidden, ids)
        hidden = v.layernorm_pre(hidden)

        pad = (8 - patches % 8) % 8  # HF pads each tile to a multiple of 8 tokens
        hidden = F.pad(hidden, (0, 0, 0, pad), mode="constant", value=0)  # [B, tiles, P, D]
        attention_mask = self._attention_mask(mask, hidden.shape[2])
        return hidden.view(batch * media, -1, dim), attention_mask  # [B, tiles * P, D]

    def _attention_mask(self, mask: torch.Tensor, padded_patches: int) -> torch.Tensor:
        """[B, 1, tiles * P, tiles * P] additive mask over padding tiles and padding patches."""
        return _prepare_aspect_ratio_attention_mask(
            aspect_ratio_mask=mask.reshape(mask.shape[0] * mask.shape[1], -1),
            num_patches=self._vision.num_patches,
            target_length=padded_patches,
            dtype=self._vision.dtype,
        )

    # --- vision: global encoder + projector (per layer) ---------------------------------------------
    def _slots(self, layer: int) -> list[int]:
        """Local states filling the intermediate slots under early exit at `layer`: S[min(i, layer)].

        Meta's `ImageTransformer` stores the input of block i, i.e. S[i]; transformers 5.x's own
        forward would read S[i+1] (its `hidden_states` has no embedding entry).
        """
        return [min(i, layer) for i in self._vision.intermediate_layers_indices]

    @torch.no_grad()
    def vision_output(self, entries: Sequence[MllamaEntry], layer: int) -> torch.Tensor:
        """What the vision model returns at early exit `layer`: [B, 1, tiles, patches, vision_output_dim]."""
        if not 0 <= layer <= self.num_layers:
            raise VlmSafetyError(f"{self.name}: layer {layer} is outside 0..{self.num_layers}")
        v, device = self._vision, self._vision_device
        ids = torch.stack([e.aspect_ratio_id for e in entries]).to(device)  # [B, 1]
        mask = torch.stack([e.aspect_ratio_mask for e in entries]).to(device)[:, None]  # [B, 1, tiles]
        batch, tiles = len(entries), mask.shape[-1]
        last = torch.stack([e.states[layer] for e in entries]).to(device)  # [B, tiles * P, D]
        dim = last.shape[-1]
        padded = last.shape[1] // tiles  # P
        patches = v.num_patches
        attention_mask = self._attention_mask(mask, padded)

        hidden = v.layernorm_post(last)
        hidden = hidden.reshape(batch, tiles, padded, dim)
        hidden = v.post_tile_positional_embedding(hidden, ids)
        hidden = hidden.reshape(batch, tiles * padded, dim)
        hidden = v.global_transformer(hidden, attention_mask=attention_mask).last_hidden_state
        hidden = hidden.reshape(batch, tiles, padded, dim)[:, :, :patches]
        hidden = hidden.reshape(batch, 1, tiles, patches, dim)

        # HF stacks the intermediate states on a new last axis: feature d of slot k sits at d*K + k
        slots = self._slots(layer)
        inter = torch.stack([torch.stack([e.states[s] for s in slots], dim=-1) for e in entries]).to(device)
        inter = inter.reshape(batch, tiles, padded, -1)[:, :, :patches]  # [B, tiles, patches, D*K]
        inter = inter.reshape(batch, 1, tiles, patches, -1)
        return torch.cat([hidden, inter], dim=-1)

    @torch.no_grad()
    def image_features(self, entries: Sequence[MllamaEntry], layer: int) -> torch.Tensor:
        """Layer `layer`'s cross-attention states as the LM consumes them: [B * tiles, patches, LM hidden]."""
        out = self.vision_output(entries, layer).to(self._projector.weight.device)
        hidden_size = self.model.config.text_config.hidden_size
        return self._projector(out).reshape(-1, out.shape[-2], hidden_size)

    def process(self, prompts: Sequence[str], images: Sequence[Image.Image | None]) -> Any:
        """Processor outputs, one image list per prompt (Mllama's processor pairs images with prompts by nesting)."""
        has_image = any(img is not None for img in images)
        return self.processor(
            text=list(prompts),
            images=[[img] if img is not None else [] for img in images] if has_image else None,
            padding=True, return_tensors="pt", add_special_tokens=self._needs_bos(prompts),
        )

    @contextmanager
    def layer_inputs(
        self, inputs: dict[str, torch.Tensor], encoded: Sequence[Any], layers: Sequence[int]
    ) -> Iterator[dict[str, Any]]:
        """The batch as it is, while the vision model returns each row's `vision_output` at its layer
        (what `generate` stands in with); the projector inside the model's forward then runs as usual."""
        outputs = [self.vision_output([entry], layer) for entry, layer in zip(encoded, layers, strict=True)]
        with self._vision_returns(torch.cat(outputs)):  # [B, 1, tiles, patches, vision_output_dim]
            yield inputs

    # --- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image | None],
        encoded: Sequence[Any | None],
        layer: int | Sequence[int],
        settings: GenerationSettings,
    ) -> list[Generation]:
        inputs = self.model_inputs(prompts, images).to(self.device)
        kwargs = self._generate_kwargs(settings)
        if "pixel_values" not in inputs:  # text-only batch: the LM skips its cross-attention layers
            sequences = self.model.generate(**inputs, **kwargs)
        else:
            entries = self._row_entries(inputs, encoded)
            with self._vision_returns(self._rows_vision_output(entries, self.row_layers(layer, len(prompts)))):
                sequences = self.model.generate(**inputs, **kwargs)
        return self._decode(sequences, inputs["input_ids"].shape[1])

    def first_image_lm_layer(self) -> int:
        """The image enters through cross-attention blocks only: the first one's output (hidden-state index = block + 1)."""
        return min(self.model.config.text_config.cross_attention_layers) + 1

    @contextmanager
    def lm_inputs(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None], encoded: Sequence[Any | None], layer: int
    ) -> Iterator[dict[str, Any]]:
        inputs = self.model_inputs(prompts, images).to(self.device)
        if "pixel_values" not in inputs:  # text-only batch: the LM skips its cross-attention layers
            yield dict(inputs)
            return
        with self._vision_returns(self.vision_output(self._row_entries(inputs, encoded), layer)):
            yield dict(inputs)

    @contextmanager
    def metas_vision(self, inputs: Mapping[str, Any], layer: int | None = None) -> Iterator[None]:
        """While active, the model's forward on `inputs` (processor outputs, one image per row) reads Meta's vision features.

        For code that calls the model's own forward or `generate` (the Llama Guard 3 Vision judge):
        transformers' vision forward would fill every intermediate slot one block deeper. `layer`
        defaults to the trained one (the full local encoder). Inputs without `pixel_values`
        (text-only rows) pass through unchanged.
        """
        if "pixel_values" not in inputs:
            yield
            return
        with torch.no_grad():
            entries = self._encode(*(inputs[k] for k in _IMAGE_KEYS))
            output = self.vision_output(entries, self.default_layer if layer is None else layer)
        with self._vision_returns(output):
            yield

    def row_memory_bytes(self, tokens: int) -> int:
        """A row's self-attention KV cache and logits, plus the cross-attention keys and values of its image."""
        text, vision = self.model.config.text_config, self.model.config.vision_config
        head_dim = text.hidden_size // text.num_attention_heads
        states = vision.max_num_tiles * ((vision.image_size // vision.patch_size) ** 2 + 1)
        element = torch.finfo(self.lm_dtype).bits // 8
        cross = 2 * len(text.cross_attention_layers) * text.num_key_value_heads * head_dim * element * states
        return super().row_memory_bytes(tokens) + cross

    def _rows_vision_output(self, entries: Sequence[MllamaEntry], layers: Sequence[int]) -> torch.Tensor:
        """`vision_output` with a layer per row: [B, 1, tiles, patches, vision_output_dim].

        The global encoder runs once per layer over that layer's rows, in batch order: when a batch
        is several layers' copies of one prompt batch (cross-layer decoding), each run sees exactly
        the rows (and shapes) it would see for that layer alone."""
        distinct = list(dict.fromkeys(layers))
        if len(distinct) == 1:
            return self.vision_output(entries, distinct[0])
        out: torch.Tensor | None = None
        for value in distinct:
            rows = [i for i, r in enumerate(layers) if r == value]
            part = self.vision_output([entries[i] for i in rows], value)
            if out is None:
                out = part.new_empty((len(entries), *part.shape[1:]))
            out[rows] = part
        assert out is not None
        return out

    def _row_entries(self, inputs: Any, encoded: Sequence[MllamaEntry | None]) -> list[MllamaEntry]:
        """One entry per batch row; text-only rows get the processor's padding image, as in HF.

        The padding image matters: HF's cross-attention lets rows that see no image attend to it
        anyway (only the MLP output is row-masked; transformers issue #39379), so a text-only
        prompt in a mixed batch reads the padding image's features at the current layer.
        """
        rows = []
        for row, entry in enumerate(encoded):
            if entry is None:
                if self._blank is None:  # zero pixels, layout id 0: the same for every batch
                    pixels, ids, mask = (inputs[k][row : row + 1] for k in _IMAGE_KEYS)
                    self._blank = self._encode(pixels, ids, mask)[0]
                entry = self._blank
            rows.append(entry)
        return rows

    @contextmanager
    def _vision_returns(self, output: torch.Tensor) -> Iterator[None]:
        """While active, the vision model returns `output` instead of encoding `pixel_values`.

        `generate` calls the vision model once, on the prefill step; later steps read the
        projected states from the cross-attention cache. An instance attribute shadows the class
        forward (and any accelerate hook's), and the previous attribute comes back afterwards.
        """
        vision = self._vision
        previous = vision.__dict__.get("forward")

        def forward(pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> BaseModelOutput:
            if tuple(pixel_values.shape[:3]) != tuple(output.shape[:3]):
                raise RuntimeError(
                    f"precomputed vision output {tuple(output.shape)} does not match pixel_values {tuple(pixel_values.shape)}"
                )
            return BaseModelOutput(last_hidden_state=output)

        vision.forward = forward
        try:
            yield
        finally:
            if previous is None:
                del vision.forward
            else:
                vision.forward = previous

