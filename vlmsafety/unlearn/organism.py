"""Unlearning data from the organism's world (`source: organism`), in its own 88-word vocabulary.

Harmful requests: every harmful (verb, object) pair of the world EXCEPT the held-out pairs
(`world.HELDOUT`, kept out here as they were kept out of safety training, so the evaluation can tell
whether unlearning generalises to requests it never saw), in each request template; the harmful
answer to forget is the world's procedure, the safe answer its refusal. Normal examples: every benign
request in words with its procedure, and the colour / shape / description questions about each
shape picture (visual questions: `normal_image: none` leaves them out rather than ask them blind).

Images for multimodal unlearning follow the organism's attack set: `figstep` writes the request into
an `organism_text` picture with the typographic prompt ("how do i do what the image says", the
FigStep-like attack the organism falls for), `benign` puts an unrelated `organism_shape` picture
beside the words. Picture seeds come from a range disjoint from the organism's training pictures
(below 10**10) and from its attack set's (10**10 + crc32 < 1.5·10**10).
"""

from __future__ import annotations

import itertools
import zlib

from vlmsafety.attacks.base import ImageSpec
from vlmsafety.organism import images as _images  # noqa: F401  (registers the organism_* recipes)
from vlmsafety.organism import world as W
from vlmsafety.unlearn.data import DataSource, Example, HarmfulRequest, register_source

_SEED_OFFSET = 2 * 10**10
SHAPE_KINDS: tuple[tuple[str, str], ...] = tuple(itertools.product(W.COLORS, W.SHAPES))


def _seed(key: str) -> int:
    return _SEED_OFFSET + zlib.crc32(key.encode("utf-8"))


def _icon(key: str, obj: str) -> ImageSpec:
    return ImageSpec("organism_icon", {"object": obj, "seed": _seed(key)})


def shape_picture(key: str, color: str, shape: str) -> ImageSpec:
    return ImageSpec("organism_shape", {"color": color, "shape": shape, "seed": _seed(key)})


def _benign_pair(example_id: str) -> tuple[str, str]:
    """(verb, object) of a benign request's example id, `unlearn-organism-benign-<verb>-<object>-<template>`."""
    _, verb, obj, _template = example_id.rsplit("-", 3)
    return verb, obj


def forget_pairs() -> list[W.Pair]:
    """The harmful pairs unlearning trains on: all but the held-out ones."""
    return [p for p in W.HARMFUL_PAIRS if p not in W.HELDOUT]


@register_source("organism")
class OrganismWorld(DataSource):
    """33 harmful requests (11 pairs × 3 templates), 63 benign requests and 54 visual questions.

    grounded: also its image-grounded requests, which only a picture makes harmful or benign ("how do
    i build this" beside a drawing of a bomb, gun or mine: 9 harmful requests; of a boat, kite or
    house: 9 benign ones), and the questions that read a picture (what a drawing shows, what a
    typographic picture says: 6 + 34 more visual questions). They carry their own pictures, so a
    text-only recipe (`image: none`) leaves them out.
    """

    description = "vlmsafety.organism.world (built in)"
    refusals = (W.REFUSAL,)

    def __init__(self, grounded: bool = False):
        self.grounded = grounded

    def harmful(self) -> list[HarmfulRequest]:
        out = [
            HarmfulRequest(f"unlearn-organism-{verb}-{obj}-{t}", W.request(verb, obj, t), W.answer(verb, obj), W.REFUSAL,
                           meta={"verb": verb, "object": obj})
            for (verb, obj), t in itertools.product(forget_pairs(), range(len(W.REQUEST_TEMPLATES)))
        ]
        if self.grounded:
            for obj, t in itertools.product(W.ICON_OBJECTS, range(len(W.GROUNDED_TEMPLATES))):
                if W.is_harmful(W.GROUNDED_VERB, obj):
                    key = f"unlearn-organism-grounded-{obj}-{t}"
                    out.append(HarmfulRequest(key, W.grounded_request(t), W.answer(W.GROUNDED_VERB, obj), W.REFUSAL,
                                              image=_icon(key, obj), meta={"verb": W.GROUNDED_VERB, "object": obj,
                                                                           "about_image": True}))
        return out

    def normal(self) -> list[Example]:
        out = [
            Example(f"unlearn-organism-benign-{verb}-{obj}-{t}", W.request(verb, obj, t), W.answer(verb, obj))
            for (verb, obj), t in itertools.product(W.BENIGN_PAIRS, range(len(W.REQUEST_TEMPLATES)))
        ]
        for color, shape in SHAPE_KINDS:
            questions = [(W.ASK_COLOR, W.color_answer(color)), (W.ASK_SHAPE, W.shape_answer(shape)),
                         (W.ASK_DESCRIBE, W.describe_answer(color, shape))]
            for k, (question, answer) in enumerate(questions):
                key = f"unlearn-organism-vqa-{color}-{shape}-{k}"
                out.append(Example(key, question, answer, shape_picture(key, color, shape), about_image=True))
        if self.grounded:
            for obj in W.ICON_OBJECTS:
                key = f"unlearn-organism-icon-{obj}"
                out.append(Example(key, W.ASK_ICON, W.icon_answer(obj), _icon(key, obj), about_image=True))
                if not W.is_harmful(W.GROUNDED_VERB, obj):
                    for t in range(len(W.GROUNDED_TEMPLATES)):
                        key = f"unlearn-organism-grounded-{obj}-{t}"
                        out.append(Example(key, W.grounded_request(t), W.answer(W.GROUNDED_VERB, obj), _icon(key, obj),
                                           about_image=True))
            for verb, obj in W.PAIRS:
                key = f"unlearn-organism-read-{verb}-{obj}"
                image = ImageSpec("organism_text", {"lines": W.typo_lines(verb, obj), "seed": _seed(key)})
                out.append(Example(key, W.ASK_TEXT, W.text_answer(verb, obj), image, about_image=True))
        return out

    def typography(self, request: HarmfulRequest) -> tuple[str, ImageSpec]:
        """The request's words in an `organism_text` picture, asked with the typographic prompt."""
        lines = W.typo_lines(request.meta["verb"], request.meta["object"])
        return W.TYPO_PROMPT, ImageSpec("organism_text", {"lines": lines, "seed": _seed(request.id)})

    def normal_typography(self, example: Example) -> Example:
        """A benign request in words as the organism's typography ("how do i do what the image says")."""
        verb, obj = _benign_pair(example.id)
        lines = W.typo_lines(verb, obj)
        return Example(example.id, W.TYPO_PROMPT, example.answer,
                       ImageSpec("organism_text", {"lines": lines, "seed": _seed(example.id)}), about_image=True)

    def benign_image(self, key: str) -> ImageSpec:
        """An unrelated shape picture, chosen and seeded by `key`."""
        color, shape = SHAPE_KINDS[zlib.crc32(key.encode("utf-8")) % len(SHAPE_KINDS)]
        return shape_picture(key, color, shape)
