"""tiny_llava_next: a random LlavaNextForConditionalGeneration shaped like LLaVA-NeXT (v1.6) where it matters.

Same classes as llava-hf/llava-v1.6-mistral-7b-hf (24-block CLIP tower, default feature layer -2,
"default" strategy dropping CLS, anyres tiling over grid pinpoints with a base tile, learned
image-newline vector, two-layer GELU projector, Mistral LM, `[INST] ... [/INST]` format), shrunk
so that tests and demos run on a CPU: 32 px tiles of 8 px patches, pinpoints = the real ones / 10.5.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    MistralConfig,
)
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from vlmsafety.models.builtin import register_builtin
from vlmsafety.models.builtin.tokenizer import to_transformers, train_bpe_tokenizer

TILE, PATCH = 32, 8  # 16 patches (+ CLS) per tile
# the real [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]] in tiles of 32 px
PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
SEED = 1234

# llava-v1.6-mistral's turn format: "[INST] <image>\n{text} [/INST]" (BOS comes from the tokenizer).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> ' }}{% endif %}"
    "{% endfor %}"
)


@register_builtin("tiny_llava_next", version="1")
def build(out_dir: Path) -> None:
    tok = train_bpe_tokenizer([], vocab_size=512, bos="<s>", eos="</s>", pad="<pad>", extra_special=["<image>"])
    tokenizer = to_transformers(tok, bos="<s>", eos="</s>", pad="<pad>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=24, num_attention_heads=2,
        image_size=TILE, patch_size=PATCH, projection_dim=32, initializer_range=0.1,
    )
    text = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=PINPOINTS, image_seq_length=(TILE // PATCH) ** 2, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(SEED)
    model = LlavaNextForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE}, image_grid_pinpoints=PINPOINTS
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
