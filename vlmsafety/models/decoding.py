"""Greedy decoding that drops a row from the batch once it has ended.

transformers' `generate` keeps every row of a batch in every decoding step until the last row ends: a
row that said its end-of-sequence token at step 3 still runs through the language model, and grows its
KV cache, until the longest row of its batch stops (the padding of its answer). On a CPU, where a step's
cost grows with its rows, that is about half of a layer sweep's decoding (docs/PERFORMANCE.md). Here
ended rows leave the batch, their KV cache rows with them, once they are an eighth of it, so wide
cross-layer batches cost about what their rows' own answers cost.

Every other step is transformers' own computation, in the order `generate` runs it for a greedy
decoder-only model: the same position ids (`cumsum(attention_mask) - 1`, padding at 0), the attention
mask dropped when nothing is padded, a `DynamicCache` built from the text config, `logits_to_keep=1`,
the prompt's extra inputs (image features) in the prefill step only, and the argmax of the last
position's float32 logits. Rows are independent in that computation, so a row's tokens are the ones
`generate` gives it (tests/test_decoding.py compares them on every family that uses this path).

Only for checkpoints whose generation config adds nothing a greedy step would apply (no repetition
penalty, minimum length, suppressed or forced tokens, ...): `unsupported_reason` names what stops it,
and the family then decodes with `generate`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache, GenerationConfig

# generation-config fields that do not change what a greedy step computes (the sampling knobs are unused
# when do_sample is false; max_length yields to the max_new_tokens every call passes)
_NEUTRAL_FIELDS = frozenset({
    "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
    "_from_model_config", "max_length", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
    "use_cache", "num_beams", "num_return_sequences",  # their defaults are None: checked on their own below
})


def unsupported_reason(model: Any) -> str | None:
    """Why greedy decoding with row dropping would not be `generate`'s greedy decoding for `model`, or None."""
    config = model.generation_config
    default = GenerationConfig().to_dict()
    # a field left unset or set to False/None/0 adds nothing (`to_diff_dict` also lists output_attentions=False)
    extra = sorted(
        key for key, value in config.to_dict().items()
        if key not in _NEUTRAL_FIELDS and value != default.get(key) and (value or default.get(key))
    )
    if extra:
        return f"its generation config sets {', '.join(extra)}"
    if (config.num_beams or 1) != 1 or (config.num_return_sequences or 1) != 1:
        return "its generation config asks for beams or several answers per prompt"
    if config.use_cache is False:
        return "its generation config turns the KV cache off"
    if getattr(model.config, "is_encoder_decoder", False):
        return "it is an encoder-decoder model"
    return None


def eos_token_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None]


@torch.no_grad()
def greedy_decode(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
    prefill: dict[str, Any] | None = None,
) -> torch.Tensor:
    """The new tokens of every row, [rows, steps]: greedy, up to `max_new_tokens`, a row's tokens after its
    end-of-sequence token (and the steps it was no longer decoded) filled with the pad id (as `generate`
    does: the generation config's, else the first EOS id).

    input_ids / attention_mask: a left-padded prompt batch; prefill: the extra `model(...)` arguments of
    the first step (e.g. `mm_encoder_outputs`)."""
    eos = torch.tensor(eos_token_ids(model), device=input_ids.device)
    pad_id = model.generation_config.pad_token_id
    if pad_id is None:
        pad_id = int(eos[0]) if eos.numel() else 0
    rows_total = input_ids.shape[0]
    out = torch.full((rows_total, max(0, max_new_tokens)), int(pad_id), dtype=torch.long, device=input_ids.device)
    if max_new_tokens <= 0 or rows_total == 0:
        return out
    padded = not bool((attention_mask == 1).all())  # generate drops an all-ones mask (another attention path)
    mask = attention_mask
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    keep_logits = {"logits_to_keep": 1} if _takes(model, "logits_to_keep") else {}
    logits = model(
        input_ids=input_ids, attention_mask=mask if padded else None, position_ids=position_ids, cache=cache,
        use_cache=True, return_dict=True, **keep_logits, **(prefill or {}),
    ).logits
    rows = torch.arange(rows_total, device=input_ids.device)  # batch row -> row of `out`
    live = torch.ones(rows_total, dtype=torch.bool, device=input_ids.device)  # batch rows still answering
    position = position_ids[:, -1:]
    steps = 0
    for step in range(max_new_tokens):
        token = logits[:, -1].to(dtype=torch.float32).argmax(dim=-1)
        out[rows[live], step] = token[live]
        steps = step + 1
        live = live & ~torch.isin(token, eos)
        if step == max_new_tokens - 1 or not bool(live.any()):
            break
        # Ended rows leave once they are an eighth of the batch: dropping copies every remaining row's KV
        # cache, so doing it at each row's end would copy a wide batch's cache at almost every step. Until
        # then an ended row is decoded on, its tokens unused (rows do not read each other).
        if int((~live).sum()) * _DROP_SHARE >= live.numel():
            kept = live.nonzero().squeeze(1)
            rows, token, mask, position, live = rows[kept], token[kept], mask[kept], position[kept], live[kept]
            cache.batch_select_indices(kept)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        position = position + 1
        logits = model(
            input_ids=token[:, None], attention_mask=mask if padded else None, position_ids=position, cache=cache,
            use_cache=True, return_dict=True, **keep_logits,
        ).logits
    return out[:, :steps]


_DROP_SHARE = 8  # ended rows leave the batch once they are 1/8 of it


def _takes(model: Any, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters
