"""Checks of an attack set's prompts against the loaded model, before anything is generated.

- A prompt's text is data: text the model would read as markup (`<image>`, `<|image_pad|>`, `</s>`)
  is neutralised by `FamilyAdapter.render`; here it is counted and logged (the records show each
  prompt as sent).
- A prompt that, with `max_new_tokens`, does not fit the language model's context is a bad row:
  an error naming the item, or with `attack.on_bad_row=skip` dropped and counted. An image row counts
  the fewest tokens its image can take (`FamilyAdapter.image_tokens_at_least`: LLaVA-1.5's 576, LLaVA-NeXT's
  base view; its tiles, and Qwen2-VL's size-dependent image tokens, are not counted).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackSet
from vlmsafety.attacks.rows import on_bad_row
from vlmsafety.errors import VlmSafetyError

log = logging.getLogger(__name__)


def fit_to_model(attack_set: AttackSet, adapter: Any, attack_cfg: DictConfig, max_new_tokens: int) -> AttackSet:
    """`attack_set` with its too-long prompts refused or dropped, and the markup it neutralised counted."""
    policy = on_bad_row(attack_cfg)
    limit = adapter.max_length
    tokenizer = getattr(adapter.processor, "tokenizer", adapter.processor)
    kept, too_long, neutralised = [], 0, 0
    for item in attack_set.items:
        neutralised += adapter.neutralise(item.text) != item.text
        if limit:
            prompt = adapter.render(item.text, item.image is not None)
            image = adapter.image_tokens_at_least - 1 if item.image is not None else 0  # beyond its placeholder
            # a token covers at least one byte (byte-level BPE, SentencePiece with byte fallback, word level):
            # short prompts need no tokenizing
            n = len(prompt.encode("utf-8")) + image
            if n + max_new_tokens > limit:
                n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + image
            if n + max_new_tokens > limit:
                message = (
                    f"attack item {item.id!r}: its prompt is {n} tokens{f' ({image + 1} of them its image)' if image else ''}, "
                    f"which with max_new_tokens={max_new_tokens} exceeds the model's context of {limit} tokens"
                )
                if policy == "error":
                    raise VlmSafetyError(f"{message}; shorten it, lower max_new_tokens, or set attack.on_bad_row=skip")
                log.warning("skipped %s", message)
                too_long += 1
                continue
        kept.append(item)
    if neutralised:
        log.warning(
            "%d prompt(s) held text the model reads as markup (e.g. an image placeholder); it was neutralised "
            "('<image>' is sent as '< image>'): each record's prompt shows the text as sent", neutralised,
        )
    if too_long:
        log.warning("skipped %d prompt(s) too long for the model's context (attack.on_bad_row=skip)", too_long)
    if not kept:
        raise VlmSafetyError(f"no attack item fits the model's context of {limit} tokens with max_new_tokens={max_new_tokens}")
    return dataclasses.replace(
        attack_set, items=kept, skipped=attack_set.skipped + too_long, too_long=too_long, neutralised=neutralised
    )
