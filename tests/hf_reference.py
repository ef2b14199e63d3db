"""The reference side of the "equals transformers' generate" tests, built with transformers alone.

Nothing here calls the adapter: every decoding argument is spelled out, the text is the
tokenizer's own `decode`, and `n_new_tokens` is counted on the raw sequences by the rule that
`vlmsafety.models.base.Generation` documents — the tokens generated up to and including the first
end-of-sequence token, or all `max_new_tokens` of them when none came.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput

from vlmsafety.models.base import Generation


def eos_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [i for i in (eos if isinstance(eos, list) else [eos]) if i is not None]


def greedy(model: Any, inputs: Any, max_new_tokens: int, stop: list[int] | None = None, **extra: Any) -> torch.Tensor:
    """transformers' own greedy `generate`, stopping on `stop` (default: the model's EOS ids)."""
    stop = stop or eos_ids(model)
    with torch.no_grad():
        return model.generate(
            **inputs, **extra, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
            top_k=None, eos_token_id=stop, pad_token_id=model.generation_config.pad_token_id,
        )


def answers(sequences: torch.Tensor, prompt_len: int, tokenizer: Any, stop: list[int], max_new_tokens: int) -> list[Generation]:
    """Per row: the tokenizer's decode of the new tokens through the first stop token, and their count."""
    out = []
    for row in sequences[:, prompt_len:].tolist():
        ends = [k for k, tok in enumerate(row) if tok in stop]
        if ends:
            n = ends[0] + 1  # the end-of-sequence token counts
        else:  # a row that never stopped ran to the limit (generation only ends early when every row has stopped)
            assert len(row) == max_new_tokens, row
            n = max_new_tokens
        out.append(Generation(text=tokenizer.decode(row[:n], skip_special_tokens=True).strip(), n_new_tokens=n))
    return out


@contextmanager
def stopping_on(model: Any, token: int) -> Iterator[list[int]]:
    """The model's EOS ids plus `token`, in its generation config while active.

    The tiny random models seldom pick their real EOS within a few tokens; adding a token that a
    row does generate makes that row stop early, so the tests see the end-of-sequence rule at work.
    """
    config = model.generation_config
    before = config.eos_token_id
    stop = [*eos_ids(model), token]
    config.eos_token_id = stop
    try:
        yield stop
    finally:
        config.eos_token_id = before


def a_generated_token(sequences: torch.Tensor, prompt_len: int, row: int = 0, position: int = 2) -> int:
    """A token that row `row` generated at `position` and not before (so stopping on it ends that row there)."""
    new = sequences[row, prompt_len:].tolist()
    for k in range(position, len(new)):
        if new[k] not in new[:k]:
            return new[k]
    raise AssertionError(f"row {row} repeats one token: {new}")


@contextmanager
def meta_local_encoder(vision, layer: int, shift: int = 0) -> Iterator[None]:
    """While active, transformers' vision forward runs its local encoder as Meta's `ImageTransformer` does.

    Blocks 1..`layer` run in order; before block idx runs, its input (the state after idx blocks)
    is stored, as Meta's loop does; slot i then reads the state after min(i + shift, layer) blocks
    (shift 0 = Meta; shift 1 = what transformers 5.x's own forward reads). Everything else —
    embeddings, masks, `layernorm_post`, the global blocks, slot layout — is transformers' own code.
    """
    blocks = vision.transformer.layers

    def forward(hidden_states, attention_mask=None):
        after = []  # after[k] = the input of block k+1 = the state after k blocks
        x = hidden_states
        for block in blocks[:layer]:
            after.append(x)
            x = block(x, attention_mask=attention_mask)
        after.append(x)
        slots = tuple(after[min(i + shift, layer)] for i in range(len(blocks) + 1))
        return BaseModelOutput(last_hidden_state=x, hidden_states=slots)

    vision.transformer.forward = forward
    try:
        yield
    finally:
        del vision.transformer.forward
