"""The organism's architecture, tokenizer and processor: a LLaVA-1.5-shaped model at toy scale.

Same classes and conventions as llava-hf/llava-1.5-7b-hf where they matter to the experiments:
a 24-block CLIP vision tower read at `vision_feature_layer=-2` with CLS dropped, a two-layer GELU
projector and a Llama language model; a word-level tokenizer over the world's vocabulary and a
chat template in the world's words ("user: <image>\\n... assistant:").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmsafety.organism.images import SIZE
from vlmsafety.organism.world import vocabulary

PATCH = 12
IMAGE_TOKENS = (SIZE // PATCH) ** 2  # 16 patch tokens per image reach the LM (CLS dropped)
PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIALS = (PAD, BOS, EOS, UNK, IMAGE)

# The conversation format, in the world's own words; BOS comes from the tokenizer.
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{ message['role'] + ': ' }}"
    "{%- if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{%- else %}"
    "{%- for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{%- for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class Shape:
    """Sizes of the organism (the vision tower always has 24 blocks, like CLIP ViT-L/14-336)."""

    vision_hidden: int = 64
    vision_heads: int = 4
    vision_layers: int = 24
    lm_hidden: int = 128
    lm_layers: int = 4
    lm_heads: int = 4


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: one id per world word, whitespace-split, BOS prepended."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in vocabulary():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
    )
    hf.padding_side = "left"
    return hf


def build_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, shape: Shape, seed: int) -> LlavaForConditionalGeneration:
    """A freshly initialised organism; the vision tower starts near identity (see `near_identity`)."""
    vision = CLIPVisionConfig(
        hidden_size=shape.vision_hidden, intermediate_size=2 * shape.vision_hidden,
        num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
        image_size=SIZE, patch_size=PATCH, projection_dim=shape.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape.lm_hidden, intermediate_size=2 * shape.lm_hidden,
        num_hidden_layers=shape.lm_layers, num_attention_heads=shape.lm_heads, num_key_value_heads=shape.lm_heads,
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=IMAGE_TOKENS, vision_feature_layer=-2, vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    near_identity(model)
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    return model


@torch.no_grad()
def near_identity(model: LlavaForConditionalGeneration, scale: float = 0.1) -> None:
    """Shrink every vision block's residual-branch outputs so the 24-block tower starts close to identity.

    With CLIP's plain initialisation a 24-block tower trained from scratch does not learn to read
    the typographic images within a CPU budget; starting near identity does (the prototype's finding).
    """
    for block in model.model.vision_tower.encoder.layers:
        block.self_attn.out_proj.weight.mul_(scale)
        block.mlp.fc2.weight.mul_(scale)
