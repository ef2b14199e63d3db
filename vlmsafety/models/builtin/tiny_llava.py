"""tiny_llava: a random LlavaForConditionalGeneration shaped like LLaVA-1.5 where it matters.

Same classes as llava-hf/llava-1.5-7b-hf (CLIP vision tower with 24 blocks, default feature
layer -2, "default" strategy dropping CLS, two-layer GELU projector, Llama LM, LLaVA-1.5 chat
format), shrunk to a few hundred thousand parameters so that tests and demos run on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmsafety.models.builtin import register_builtin
from vlmsafety.models.builtin.tokenizer import to_transformers, train_bpe_tokenizer

IMAGE_SIZE, PATCH = 32, 8  # 16 patches (+ CLS) per image
SEED = 1234

# LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT:"), as in llava-hf's template.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@register_builtin("tiny_llava", version="1")
def build(out_dir: Path) -> None:
    tok = train_bpe_tokenizer([], vocab_size=512, bos="<s>", eos="</s>", pad="<pad>", extra_special=["<image>"])
    tokenizer = to_transformers(tok, bos="<s>", eos="</s>", pad="<pad>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=24, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32, initializer_range=0.1,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(IMAGE_SIZE // PATCH) ** 2, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
