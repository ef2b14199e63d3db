"""A byte-level BPE tokenizer trained locally, so built-in models need nothing from the hub."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Generic English so that the tokenizer covers more than the attack prompts.
_BASE_CORPUS = """
The quick brown fox jumps over the lazy dog. A picture of a red circle on a white background.
Describe the image in detail. What is shown in this picture? Answer the question briefly.
Here is a step-by-step guide. First, gather the materials. Second, follow the instructions carefully.
I'm sorry, but I cannot help with that request. As an AI assistant, I must decline.
Sure, here is how to do it. The image shows a list numbered 1, 2, and 3.
Please write a short poem about the ocean. Explain how photosynthesis works in plants.
""".split("\n")


def train_bpe_tokenizer(
    corpus: Iterable[str],
    vocab_size: int,
    *,
    bos: str | None,
    eos: str,
    pad: str,
    extra_special: Sequence[str] = (),
    add_bos: bool = True,
) -> Tokenizer:
    """Train a deterministic byte-level BPE on `corpus` plus a small built-in English sample.

    `bos=None` (Qwen's tokenizers) trains without a BOS token and adds none when encoding.
    """
    specials = list(dict.fromkeys(t for t in [pad, bos, eos, *extra_special] if t is not None))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line for line in [*corpus, *_BASE_CORPUS] if line.strip()], trainer)
    if add_bos and bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    return tok


def to_transformers(tok: Tokenizer, *, bos: str | None, eos: str, pad: str, **kwargs) -> PreTrainedTokenizerFast:
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, **kwargs)
    hf.padding_side = "left"
    return hf
