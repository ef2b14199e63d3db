"""tiny_mllama: a random MllamaForConditionalGeneration shaped like Llama 3.2 Vision where it matters.

Same classes as meta-llama/Llama-3.2-11B-Vision-Instruct (tiled local encoder whose intermediate
states feed the projector, gated global encoder, cross-attention LM layers, Llama-3 chat format
with `<|image|>` before the user's text), shrunk so that tests and demos run on a CPU:
8 local blocks with intermediate layers [1, 3, 5, 6] (spread like the real [3, 7, 15, 23, 30]
over 32), 2 global blocks, 32 px tiles of 8 px patches, up to 4 tiles per image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaProcessor,
    MllamaTextConfig,
    MllamaVisionConfig,
)
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

from vlmsafety.models.builtin import register_builtin
from vlmsafety.models.builtin.tokenizer import to_transformers, train_bpe_tokenizer

IMAGE_SIZE, PATCH, MAX_TILES = 32, 8, 4  # 16 patches + CLS per tile
LOCAL_LAYERS, INTERMEDIATE = 8, [1, 3, 5, 6]
VISION_HIDDEN = 32
SEED = 1234

BOS, EOS, EOT, PAD, IMAGE = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", "<|image|>"
SPECIALS = [EOT, IMAGE, "<|start_header_id|>", "<|end_header_id|>", "<|python_tag|>"]

# Llama-3.2-Vision-Instruct's chat template without its tool-calling branches: the template writes
# BOS itself, puts each image placeholder where the content lists it and, for prompts without an
# image, opens with a system turn carrying "Cutting Knowledge Date: December 2023" and "Today Date: "
# + date_string, where date_string defaults to strftime_now("%d %b %Y") (today) unless the caller
# passes one, and a system message is refused beside an image. Those parts follow the checkpoint's
# chat_template as copied in maiqingqiang/Jinja, Tests/JinjaTests/ChatTemplateTests.swift
# (`llama3_2visionChatTemplate`); the hub file itself is not readable here (not verified against it).
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}"
    "{%- if strftime_now is defined %}{%- set date_string = strftime_now(\"%d %b %Y\") %}"
    "{%- else %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = \"\" %}{%- endif %}"
    "{%- set image_ns = namespace(has_images=false) %}"
    "{%- for message in messages %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{%- set image_ns.has_images = true %}{%- endif %}"
    "{%- endfor %}{%- endfor %}"
    "{%- if image_ns.has_images and not system_message == \"\" %}"
    "{{- raise_exception(\"Prompting with images is incompatible with system messages.\") }}"
    "{%- endif %}"
    "{%- if not image_ns.has_images %}"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}"
    "{{- system_message }}"
    "{{- \"<|eot_id|>\" }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)


def random_model(tokenizer: Any, eos_ids: list[int], max_position_embeddings: int, seed: int) -> MllamaForConditionalGeneration:
    """The tiny Mllama architecture (also the Llama Guard 3 Vision stand-in's) over `tokenizer`, randomly
    initialised from `seed`, cross-attention gates opened, pad and EOS ids in its generation config."""
    vision = MllamaVisionConfig(
        hidden_size=VISION_HIDDEN, intermediate_size=64, num_hidden_layers=LOCAL_LAYERS, num_global_layers=2,
        attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH, max_num_tiles=MAX_TILES,
        intermediate_layers_indices=INTERMEDIATE, vision_output_dim=VISION_HIDDEN * (1 + len(INTERMEDIATE)),
        initializer_range=0.1,
    )
    text = MllamaTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, cross_attention_layers=[1, 3],
        max_position_embeddings=max_position_embeddings, initializer_range=0.1, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids,
    )
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id)
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()
    _open_gates(model)  # random init leaves the image no effect on the LM
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = eos_ids
    return model


@register_builtin("tiny_mllama", version="2")  # 2: the official template's date line
def build(out_dir: Path) -> None:
    tok = train_bpe_tokenizer([], vocab_size=512, bos=BOS, eos=EOS, pad=PAD, extra_special=SPECIALS)
    tokenizer = to_transformers(tok, bos=BOS, eos=EOS, pad=PAD, extra_special_tokens={"image_token": IMAGE})
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in (EOS, EOT)]
    model = random_model(tokenizer, eos_ids, max_position_embeddings=512, seed=SEED)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = MllamaImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, max_image_tiles=MAX_TILES)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


@torch.no_grad()
def _open_gates(model: MllamaForConditionalGeneration) -> None:
    """Set every tanh gate to a fixed non-zero value: random init leaves the image no effect on the LM.

    Cross-attention gates and the tile/position embedding gates start at zero (as in a real
    checkpoint before training); the global blocks' gates start as small random numbers.
    """
    vision = model.model.vision_model
    vision.gated_positional_embedding.gate.fill_(0.5)
    vision.pre_tile_positional_embedding.gate.fill_(0.5)
    vision.post_tile_positional_embedding.gate.fill_(0.5)
    for block in vision.global_transformer.layers:
        block.gate_attn.fill_(math.pi / 4)
        block.gate_ffn.fill_(math.pi / 4)
    for layer_idx in model.config.text_config.cross_attention_layers:
        layer = model.model.language_model.layers[layer_idx]
        layer.cross_attn_attn_gate.fill_(1.0)
        layer.cross_attn_mlp_gate.fill_(1.0)
