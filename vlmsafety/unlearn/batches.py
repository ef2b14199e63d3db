"""Examples → model inputs whose loss reads answer tokens only, and the quantities every method needs.

A batch is the processor's left-padded prompts (exactly as generation sees them, images expanded by
the processor) followed by each answer's tokens and right padding. `labels` holds the answer token
ids and -100 everywhere else (prompt, image tokens, padding); padding is also off in the attention
mask, so the pad id the tokenizer uses never matters. Text-only and image examples go through the
model in separate forward passes (as in generation: some families let text-only rows of a mixed
batch attend to a padding image).

An image example with a `layer` (layer-wise recipes) is encoded once by the vision tower (every
layer's states, `FamilyAdapter.encode_images`, through the worker's cache in a job) and its features
are layer `layer`'s, handed to the model by the family adapter exactly as generation at that layer
hands them (`FamilyAdapter.layer_inputs`); without a layer the model runs its own forward (the
trained default layer). The two kinds go in separate passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from vlmsafety.attacks.base import ImageSpec
from vlmsafety.attacks.images import render_image
from vlmsafety.models.base import FamilyAdapter
from vlmsafety.unlearn.data import Example

IGNORE = -100  # label of positions the loss skips (PyTorch's cross-entropy default)
ImageLoader = Callable[[ImageSpec], Image.Image]
# (specs, their rendered images) -> per image, the family's `encode_images` entry (every layer's states)
ImageEncoder = Callable[[Sequence[ImageSpec], Sequence[Image.Image]], list[Any]]


@dataclass
class Batch:
    """Model inputs for examples that all have an image, or all have none."""

    inputs: dict[str, torch.Tensor]  # input_ids / attention_mask [B, S], family extras (pixel_values, ...)
    labels: torch.Tensor  # [B, S] answer token ids, IGNORE elsewhere
    n_images: int
    vision_tokens: int  # patches through the vision encoder (cost estimate)
    encoded: list[Any] | None = None  # per row, its image's `encode_images` entry (rows with a layer only)
    layers: list[int] | None = None  # per row, the vision layer whose features the model reads; None = its own forward


@dataclass
class Meter:
    """Work done by forward passes (for the cost estimate): tokens, images, vision patches, passes."""

    tokens: dict[str, int] = field(default_factory=lambda: {"grad": 0, "no_grad": 0})  # LM tokens (attention mask)
    vision_tokens: dict[str, int] = field(default_factory=lambda: {"grad": 0, "no_grad": 0})
    images: int = 0
    forward_passes: int = 0

    def add(self, batch: Batch, grad: bool) -> None:
        key = "grad" if grad else "no_grad"
        self.tokens[key] += int(batch.inputs["attention_mask"].sum())
        self.vision_tokens[key] += batch.vision_tokens
        self.images += batch.n_images
        self.forward_passes += 1


def make_batch(
    adapter: FamilyAdapter, examples: Sequence[Example], load_image: ImageLoader = render_image,
    encode: ImageEncoder | None = None,
) -> Batch:
    """One batch from examples that all have an image or all have none, and whose images all have a
    `layer` or all have none (`encode`: how layered images are encoded; default `adapter.encode_images`)."""
    has_image = {ex.image is not None for ex in examples}
    if len(has_image) != 1:
        raise ValueError("make_batch needs examples that all have an image or all have none")
    with_image = has_image.pop()
    layered = {ex.layer is not None for ex in examples} if with_image else {False}
    if len(layered) != 1:
        raise ValueError("make_batch needs image examples that all have a layer or all have none")
    prompts = [adapter.render(ex.prompt, with_image) for ex in examples]
    images = [load_image(ex.image) if ex.image is not None else None for ex in examples]
    enc = adapter.model_inputs(prompts, images)
    tokenizer = getattr(adapter.processor, "tokenizer", adapter.processor)
    answers = [
        tokenizer(adapter.render_answer(ex.prompt, with_image, ex.answer), add_special_tokens=False)["input_ids"]
        for ex in examples
    ]
    ids, mask = enc["input_ids"], enc["attention_mask"]  # [B, P], left-padded
    b, p = ids.shape
    a = max(len(x) for x in answers)
    pad = tokenizer.pad_token_id
    if pad is None:  # any id will do: padded positions are masked out of attention and labels
        pad = tokenizer.convert_tokens_to_ids(adapter.end_of_turn_tokens()[0])
    input_ids = torch.full((b, p + a), pad, dtype=ids.dtype)
    attention = torch.zeros((b, p + a), dtype=mask.dtype)
    labels = torch.full((b, p + a), IGNORE, dtype=torch.long)
    input_ids[:, :p], attention[:, :p] = ids, mask
    for i, ans in enumerate(answers):
        span = slice(p, p + len(ans))
        input_ids[i, span] = torch.tensor(ans, dtype=ids.dtype)
        attention[i, span] = 1
        labels[i, span] = torch.tensor(ans)
    inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention}
    for key, value in enc.items():
        if key in inputs or not isinstance(value, torch.Tensor):
            continue
        if value.dim() >= 2 and tuple(value.shape[:2]) == (b, p):
            # per-token extras (Mllama's cross_attention_mask, Qwen's mm_token_type_ids): the answer
            # continues the prompt's last (text) token, so it inherits that token's value
            value = torch.cat([value, value[:, -1:].expand(b, a, *value.shape[2:])], dim=1)
        inputs[key] = value
    batch = Batch(inputs, labels, sum(img is not None for img in images), adapter.vision_tokens(enc))
    if layered.pop():
        specs = [ex.image for ex in examples]
        batch.encoded = (encode or (lambda _, imgs: adapter.encode_images(imgs)))(specs, images)
        batch.layers = [int(ex.layer) for ex in examples]
    return batch


def make_batches(
    adapter: FamilyAdapter, examples: Sequence[Example], load_image: ImageLoader = render_image,
    encode: ImageEncoder | None = None,
) -> list[tuple[list[int], Batch]]:
    """Examples split into a text-only batch, an image batch at the model's own layer and an image
    batch at sampled layers: [(positions in `examples`, batch)]."""
    kind = lambda ex: 0 if ex.image is None else (1 if ex.layer is None else 2)  # noqa: E731
    out = []
    for k in (0, 1, 2):
        idx = [i for i, ex in enumerate(examples) if kind(ex) == k]
        if idx:
            out.append((idx, make_batch(adapter, [examples[i] for i in idx], load_image, encode)))
    return out


def forward_logits(
    model: torch.nn.Module, batch: Batch, device: torch.device, adapter: FamilyAdapter | None = None
) -> torch.Tensor:
    """Logits at the positions that predict answer tokens: [answer tokens in the batch, vocab], float32.

    A batch with `layers` needs the `adapter`: it swaps the images for those layers' features.
    """
    inputs = {k: v.to(device) for k, v in batch.inputs.items()}
    if batch.layers is not None:
        if adapter is None:
            raise ValueError("a batch with sampled vision layers needs the family adapter to build its inputs")
        with adapter.layer_inputs(inputs, batch.encoded or [], batch.layers) as layered:
            logits = model(**layered).logits  # [B, S, V]
    else:
        logits = model(**inputs).logits  # [B, S, V]
    targets = batch.labels.to(device)[:, 1:]  # position t predicts token t + 1
    return logits[:, :-1][targets != IGNORE].float()


def answer_logprobs(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the answer's log-probability (sum over its tokens) [B] and its token count [B].

    logits: `forward_logits` output, [answer tokens, vocab].
    """
    targets = batch.labels[:, 1:].to(logits.device)
    mask = targets != IGNORE  # [B, S-1]
    token_lp = torch.log_softmax(logits, dim=-1).gather(1, targets[mask][:, None])[:, 0]  # [T]
    row = mask.nonzero()[:, 0]  # example index of each answer token
    n = mask.sum(1)
    return torch.zeros(len(n), device=logits.device).index_add(0, row, token_lp), n


def token_kl(ref_logits: torch.Tensor, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Per example: KL(reference ‖ current) averaged over its answer tokens [B] (nats).

    ref_logits, logits: [answer tokens, vocab] at the same positions.
    """
    ref_lp = torch.log_softmax(ref_logits, dim=-1)
    kl = F.kl_div(torch.log_softmax(logits, dim=-1), ref_lp, log_target=True, reduction="none").sum(-1)  # [T]
    mask = batch.labels[:, 1:].to(logits.device) != IGNORE
    row = mask.nonzero()[:, 0]
    n = mask.sum(1)
    return torch.zeros(len(n), device=logits.device).index_add(0, row, kl) / n.clamp(min=1)
