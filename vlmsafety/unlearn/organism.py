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


def shape_picture(key: str, color: str, shape: str) -> ImageSpec:
    return ImageSpec("organism_shape", {"color": color, "shape": shape, "seed": _seed(key)})


def forget_pairs() -> list[W.Pair]:
    """The harmful pairs unlearning trains on: all but the held-out ones."""
    return [p for p in W.HARMFUL_PAIRS if p not in W.HELDOUT]


@register_source("organism")
class OrganismWorld(DataSource):
    """33 harmful requests (11 pairs × 3 templates), 63 benign requests and 54 visual questions."""

    description = "vlmsafety.organism.world (built in)"
    refusals = (W.REFUSAL,)

    def harmful(self) -> list[HarmfulRequest]:
        return [
            HarmfulRequest(f"unlearn-organism-{verb}-{obj}-{t}", W.request(verb, obj, t), W.answer(verb, obj), W.REFUSAL,
                           meta={"verb": verb, "object": obj})
            for (verb, obj), t in itertools.product(forget_pairs(), range(len(W.REQUEST_TEMPLATES)))
        ]

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
        return out

    def typography(self, request: HarmfulRequest) -> tuple[str, ImageSpec]:
        """The request's words in an `organism_text` picture, asked with the typographic prompt."""
        lines = W.typo_lines(request.meta["verb"], request.meta["object"])
        return W.TYPO_PROMPT, ImageSpec("organism_text", {"lines": lines, "seed": _seed(request.id)})

    def benign_image(self, key: str) -> ImageSpec:
        """An unrelated shape picture, chosen and seeded by `key`."""
        color, shape = SHAPE_KINDS[zlib.crc32(key.encode("utf-8")) % len(SHAPE_KINDS)]
        return shape_picture(key, color, shape)
