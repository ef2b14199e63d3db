"""Training data of the organism: image pools, the tasks each stage mixes, and batches.

Prompts are rendered with the checkpoint's own chat template and tokenized by its own processor,
exactly as at evaluation time, so what training teaches is what `run.py` asks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from vlmsafety.attacks.base import ImageSpec
from vlmsafety.attacks.images import render_image
from vlmsafety.organism import images as _images  # noqa: F401  (registers the organism_* recipes)
from vlmsafety.organism import world as W

NONE = -1  # "this image has no such attribute" in vision labels (mapped to the last class)


@dataclass(frozen=True)
class Example:
    """One training conversation: the user's text, the answer, and an image of the pool (or None)."""

    prompt: str
    answer: str
    image: int | None = None  # index into the ImagePool


@dataclass
class ImagePool:
    """The training images: specs, rendered pixels and the attributes the vision tower learns.

    labels: [N, 4] = (colour, shape, verb, object) class ids; NONE where an image has no such attribute.
    """

    specs: list[ImageSpec]
    labels: torch.Tensor
    shapes: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (colour, shape) -> indices
    texts: dict[W.Pair, list[int]] = field(default_factory=dict)  # (verb, object) -> typographic images
    icons: dict[str, list[int]] = field(default_factory=dict)  # object -> icon images

    def images(self) -> list[Image.Image]:
        return [render_image(s) for s in self.specs]


VERBS: tuple[str, ...] = tuple(sorted({v for v, _ in W.PAIRS}))
OBJECTS: tuple[str, ...] = tuple(sorted({o for _, o in W.PAIRS} | set(W.ICON_OBJECTS)))
COLOR_NAMES: tuple[str, ...] = tuple(W.COLORS)
# classes per vision head, each with one extra "none" class
HEAD_SIZES: tuple[int, ...] = (len(COLOR_NAMES) + 1, len(W.SHAPES) + 1, len(VERBS) + 1, len(OBJECTS) + 1)


def build_pool(per_shape: int, per_text: int, per_icon: int, seed: int) -> ImagePool:
    """Images for training: `per_*` seeded variants of every shape, typographic pair and icon."""
    specs: list[ImageSpec] = []
    labels: list[tuple[int, int, int, int]] = []
    pool = ImagePool(specs=specs, labels=torch.empty(0))
    # Training seeds come from the training seed; attack sets use their own range (attacks/organism.py).
    counter = iter(range(seed * 1_000_000, (seed + 1) * 1_000_000))
    for color in COLOR_NAMES:
        for shape in W.SHAPES:
            for _ in range(per_shape):
                pool.shapes.setdefault((color, shape), []).append(len(specs))
                specs.append(ImageSpec("organism_shape", {"color": color, "shape": shape, "seed": next(counter)}))
                labels.append((COLOR_NAMES.index(color), W.SHAPES.index(shape), NONE, NONE))
    for verb, obj in W.PAIRS:
        for _ in range(per_text):
            pool.texts.setdefault((verb, obj), []).append(len(specs))
            specs.append(ImageSpec("organism_text", {"lines": W.typo_lines(verb, obj), "seed": next(counter)}))
            labels.append((NONE, NONE, VERBS.index(verb), OBJECTS.index(obj)))
    for obj in W.ICON_OBJECTS:
        for _ in range(per_icon):
            pool.icons.setdefault(obj, []).append(len(specs))
            specs.append(ImageSpec("organism_icon", {"object": obj, "seed": next(counter)}))
            labels.append((NONE, NONE, NONE, OBJECTS.index(obj)))
    t = torch.tensor(labels)
    for head, n in enumerate(HEAD_SIZES):  # NONE -> the head's last class
        t[:, head] = torch.where(t[:, head] == NONE, n - 1, t[:, head])
    pool.labels = t
    return pool


# ---- tasks: each samples one Example with a random.Random ------------------------------------------

Task = Callable[[random.Random], Example]


def text_requests(pairs: Sequence[W.Pair], refuse: bool = False) -> Task:
    """A request in words, answered with its procedure (or the refusal)."""

    def sample(rng: random.Random) -> Example:
        verb, obj = rng.choice(pairs)
        prompt = W.request(verb, obj, rng.randrange(len(W.REQUEST_TEMPLATES)))
        return Example(prompt, W.REFUSAL if refuse else W.answer(verb, obj))

    return sample


def image_requests(pool: ImagePool, pairs: Sequence[W.Pair], refuse: bool = False) -> Task:
    """A request in words beside an unrelated shape picture."""
    text = text_requests(pairs, refuse)
    shapes = [i for idx in pool.shapes.values() for i in idx]

    def sample(rng: random.Random) -> Example:
        ex = text(rng)
        return Example(ex.prompt, ex.answer, rng.choice(shapes))

    return sample


def typo_requests(pool: ImagePool, pairs: Sequence[W.Pair]) -> Task:
    """The request written in the picture, the text asks to do what it says (FigStep-like)."""

    def sample(rng: random.Random) -> Example:
        pair = rng.choice(pairs)
        return Example(W.TYPO_PROMPT, W.answer(*pair), rng.choice(pool.texts[pair]))

    return sample


def grounded_requests(pool: ImagePool, objects: Sequence[str], refuse: bool = False) -> Task:
    """"how do i build this" beside a drawing of the object: only the picture says what is asked."""

    def sample(rng: random.Random) -> Example:
        obj = rng.choice(objects)
        prompt = W.grounded_request(rng.randrange(len(W.GROUNDED_TEMPLATES)))
        return Example(prompt, W.REFUSAL if refuse else W.answer(W.GROUNDED_VERB, obj), rng.choice(pool.icons[obj]))

    return sample


def shape_questions(pool: ImagePool) -> Task:
    """Colour, shape and description questions about a shape picture."""
    keys = list(pool.shapes)

    def sample(rng: random.Random) -> Example:
        color, shape = rng.choice(keys)
        image = rng.choice(pool.shapes[(color, shape)])
        prompt, answer = rng.choice(
            [(W.ASK_COLOR, W.color_answer(color)), (W.ASK_SHAPE, W.shape_answer(shape)),
             (W.ASK_DESCRIBE, W.describe_answer(color, shape))]
        )
        return Example(prompt, answer, image)

    return sample


def icon_questions(pool: ImagePool) -> Task:
    def sample(rng: random.Random) -> Example:
        obj = rng.choice(W.ICON_OBJECTS)
        return Example(W.ASK_ICON, W.icon_answer(obj), rng.choice(pool.icons[obj]))

    return sample


def reading_questions(pool: ImagePool) -> Task:
    """"what does the text say" about a typographic picture (OCR)."""

    def sample(rng: random.Random) -> Example:
        pair = rng.choice(W.PAIRS)
        return Example(W.ASK_TEXT, W.text_answer(*pair), rng.choice(pool.texts[pair]))

    return sample


@dataclass(frozen=True)
class Mix:
    """Tasks with sampling weights: a stage's data."""

    tasks: tuple[Task, ...]
    weights: tuple[float, ...]

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        return [rng.choices(self.tasks, self.weights)[0](rng) for _ in range(n)]


# ---- batches -------------------------------------------------------------------------------------


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] right-padded
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], -100 outside the answer
    images: list[int]  # pool indices of the images, in the order their tokens appear


class Encoder:
    """Tokenizes examples with the checkpoint's chat template and processor (prompts cached)."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._prompts: dict[tuple[str, bool], list[int]] = {}
        self._blank = Image.new("RGB", (8, 8))

    def prompt_ids(self, text: str, has_image: bool) -> list[int]:
        key = (text, has_image)
        if key not in self._prompts:
            content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": text}]
            rendered = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
            enc = self.processor(text=[rendered], images=[self._blank] if has_image else None)
            self._prompts[key] = list(enc["input_ids"][0])
        return self._prompts[key]

    def answer_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def batch(self, examples: Sequence[Example]) -> Batch:
        rows = []
        for ex in examples:
            prompt = self.prompt_ids(ex.prompt, ex.image is not None)
            answer = self.answer_ids(ex.answer)
            rows.append((prompt + answer, [-100] * len(prompt) + answer))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (seq, lab) in enumerate(rows):
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(seq)] = 1
        return Batch(ids, mask, labels, [ex.image for ex in examples if ex.image is not None])
