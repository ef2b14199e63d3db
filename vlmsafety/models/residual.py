"""One forward pass of a VLM's language model, keeping the residual stream at the last prompt token.

`task=probe` reads refusal inside the LM without generating (docs/probe.md). Forward hooks on the
LM's decoder blocks keep only the last position of each block's output (a real 7B model's full
hidden states at every block would not fit a batch in memory); they are removed whatever happens.
transformers' own `output_hidden_states` is not used: it installs capture hooks that stay on the
model, and its last entry is after the final norm, not the residual stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class PromptStates:
    """What one forward pass over a batch of rendered prompts leaves at the last prompt token."""

    hidden: torch.Tensor  # [B, LM blocks + 1, D] float32 on the CPU: index 0 = the first block's input, i = block i's output
    logits: torch.Tensor  # [B, vocab] float32 on the CPU: the next-token logits there (the first answer token)


def _last(x: Any) -> torch.Tensor:
    hidden = x[0] if isinstance(x, (tuple, list)) else x  # a block returns a tensor or (hidden, ...)
    return hidden[:, -1].detach().float().cpu()


@torch.no_grad()
def last_token_states(model: nn.Module, blocks: nn.ModuleList, inputs: dict[str, Any]) -> PromptStates:
    """`model(**inputs)` once (no cache, logits at the last position only), capturing every block's residual stream.

    `inputs` must be left-padded (the last position is every row's last prompt token). A block the
    LM skips (Mllama's cross-attention blocks without an image) leaves the stream unchanged, so its
    entry repeats the previous one.
    """
    mask = inputs.get("attention_mask")
    if mask is not None and not bool(mask[:, -1].all()):
        raise RuntimeError("the prompts are not left-padded: the last position is padding for some rows")
    first_input: list[torch.Tensor] = []
    outputs: dict[int, torch.Tensor] = {}

    def keep_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not first_input:  # the first block that runs reads the embeddings (image features included)
            first_input.append(_last(args[0] if args else kwargs["hidden_states"]))

    handles = []
    try:
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(keep_input, with_kwargs=True))
            handles.append(block.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, _last(out))))
        out = model(**inputs, use_cache=False, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
    states = [first_input[0]]
    for i in range(len(blocks)):
        states.append(outputs.get(i, states[-1]))
    return PromptStates(hidden=torch.stack(states, dim=1), logits=out.logits[:, -1].detach().float().cpu())
