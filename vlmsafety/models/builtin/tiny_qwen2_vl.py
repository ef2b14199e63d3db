"""tiny_qwen2_vl / tiny_qwen25_vl: random Qwen2-VL and Qwen2.5-VL models shaped like the real ones where it matters.

Same classes as Qwen/Qwen2-VL-7B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct: a ViT over 2×2×2
(time × height × width) patches with 2-D rotary position embeddings and per-image attention
(cu_seqlens), a 2×2 patch merger as projector, a Qwen2 LM with multimodal RoPE, the ChatML format
with `<|vision_start|><|image_pad|><|vision_end|>`. Qwen2.5-VL adds windowed attention in every
block except `fullatt_block_indexes`, RMSNorm and a gated SiLU MLP. Shrunk so that tests run on a
CPU: 8 blocks (2.5: full attention in blocks 3 and 7, like the real 7/15/23/31 over 32), 8 px
patches, images resized to 32..64 px per side, windows of 2×2 merged tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vlmsafety.models.builtin import register_builtin
from vlmsafety.models.builtin.tokenizer import to_transformers, train_bpe_tokenizer
from vlmsafety.models.qwen2_vl import Qwen2VLAdapter, Qwen25VLAdapter

PATCH, MERGE, TEMPORAL = 8, 2, 2
MIN_PIXELS, MAX_PIXELS = 32 * 32, 64 * 64  # at most 8×8 patches = 16 merged tokens per image
DEPTH, FULL_ATTENTION = 8, [3, 7]
VISION_HIDDEN, LM_HIDDEN = 32, 64
SEED = 1234

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"

# The Instruct checkpoints' ChatML template without its video and tool branches: a default system
# turn, each image as <|vision_start|><|image_pad|><|vision_end|> where the content lists it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@register_builtin("tiny_qwen2_vl", version="1")
def build_qwen2_vl(out_dir: Path) -> None:
    vision = Qwen2VLVisionConfig(
        depth=DEPTH, embed_dim=VISION_HIDDEN, hidden_size=LM_HIDDEN, mlp_ratio=2, num_heads=2,
        patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL, initializer_range=0.1,
    )
    _build(out_dir, Qwen2VLConfig, Qwen2VLAdapter, vision)


@register_builtin("tiny_qwen25_vl", version="1")
def build_qwen25_vl(out_dir: Path) -> None:
    vision = Qwen2_5_VLVisionConfig(
        depth=DEPTH, hidden_size=VISION_HIDDEN, intermediate_size=64, out_hidden_size=LM_HIDDEN, num_heads=2,
        patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL,
        window_size=2 * MERGE * PATCH, fullatt_block_indexes=FULL_ATTENTION, initializer_range=0.1,
    )
    _build(out_dir, Qwen2_5_VLConfig, Qwen25VLAdapter, vision)


def _build(out_dir: Path, config_class: type, family: type[Qwen2VLAdapter], vision) -> None:
    """Save a random `family.model_class` and the family's (torchvision-free) processor into `out_dir`."""
    specials = [IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]
    tok = train_bpe_tokenizer([], vocab_size=512, bos=None, eos=IM_END, pad=PAD, extra_special=specials)
    tokenizer = to_transformers(
        tok, bos=None, eos=IM_END, pad=PAD, extra_special_tokens={"image_token": IMAGE_PAD, "video_token": VIDEO_PAD}
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (PAD, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)}
    # head_dim 16: the multimodal RoPE sections (time, height, width) split its 8 frequencies
    text = dict(
        vocab_size=len(tokenizer), hidden_size=LM_HIDDEN, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.1,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=None, eos_token_id=ids[IM_END], pad_token_id=ids[PAD],
    )
    config = config_class(
        text_config=text, vision_config=vision.to_dict(), image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END],
    )
    torch.manual_seed(SEED)
    model = family.model_class(config).eval()
    model.generation_config.pad_token_id = ids[PAD]
    model.generation_config.eos_token_id = [ids[IM_END], ids[PAD]]
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS
    )
    processor = family.processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
