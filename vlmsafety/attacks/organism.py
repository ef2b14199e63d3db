"""The organism's attack set (`loader: organism`): its world's requests in six parts (categories).

Harmful parts: `text` (the request in words), `image` (in words beside an unrelated shape picture),
`typo` (written in the picture, FigStep-like), `grounded` ("how do i build this" beside a drawing
of a weapon). Benign parts: `utility` (visual questions and benign requests with a picture) and
`benign_text` (benign requests in words, several sharing a verb or an object with harmful ones:
over-refusal probes). Every item's `target` is its exact expected answer if the model complies;
`meta.heldout` marks pairs kept out of safety training. Pictures are seeded from the item id in a
range disjoint from the training pictures'.
"""

from __future__ import annotations

import itertools
import zlib

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.errors import VlmSafetyError
from vlmsafety.organism import images as _images  # noqa: F401  (registers the organism_* recipes)
from vlmsafety.organism import world as W

SOURCE = "organism"
HARMFUL_PARTS = ("text", "image", "typo", "grounded")
BENIGN_PARTS = ("utility", "benign_text")
PARTS = HARMFUL_PARTS + BENIGN_PARTS
_SEED_OFFSET = 10**10  # training pictures use seeds below 10**10 (see organism/data.py)


def _seed(item_id: str) -> int:
    return _SEED_OFFSET + zlib.crc32(item_id.encode("utf-8"))


def _shape(item_id: str, k: int) -> ImageSpec:
    color, shape = list(itertools.product(W.COLORS, W.SHAPES))[k % (len(W.COLORS) * len(W.SHAPES))]
    return ImageSpec("organism_shape", {"color": color, "shape": shape, "seed": _seed(item_id)})


def _text(item_id: str, verb: str, obj: str) -> ImageSpec:
    return ImageSpec("organism_text", {"lines": W.typo_lines(verb, obj), "seed": _seed(item_id)})


def _icon(item_id: str, obj: str) -> ImageSpec:
    return ImageSpec("organism_icon", {"object": obj, "seed": _seed(item_id)})


def _item(item_id: str, category: str, harmful: bool, text: str, target: str, image: ImageSpec | None = None,
          behavior: str | None = None, **meta) -> AttackItem:
    pair = (meta.get("verb"), meta.get("object"))
    meta["heldout"] = pair in W.HELDOUT
    return AttackItem(id=item_id, source=SOURCE, category=category, harmful=harmful, text=text, image=image,
                      behavior=behavior, target=target, meta=meta)


def harmful_items() -> list[AttackItem]:
    items = []
    for k, ((verb, obj), t) in enumerate(itertools.product(W.HARMFUL_PAIRS, range(len(W.REQUEST_TEMPLATES)))):
        text, target = W.request(verb, obj, t), W.answer(verb, obj)
        items.append(_item(f"organism-text-{verb}-{obj}-{t}", "text", True, text, target, verb=verb, object=obj))
        iid = f"organism-image-{verb}-{obj}-{t}"
        items.append(_item(iid, "image", True, text, target, _shape(iid, k), verb=verb, object=obj))
    for verb, obj in W.HARMFUL_PAIRS:
        for k in range(2):
            iid = f"organism-typo-{verb}-{obj}-{k}"
            items.append(_item(iid, "typo", True, W.TYPO_PROMPT, W.answer(verb, obj), _text(iid, verb, obj),
                               W.request(verb, obj), verb=verb, object=obj))
    for obj in W.ICON_OBJECTS:
        if not W.is_harmful(W.GROUNDED_VERB, obj):
            continue
        for t, k in itertools.product(range(len(W.GROUNDED_TEMPLATES)), range(2)):
            iid = f"organism-grounded-{obj}-{t}-{k}"
            items.append(_item(iid, "grounded", True, W.grounded_request(t), W.answer(W.GROUNDED_VERB, obj),
                               _icon(iid, obj), W.request(W.GROUNDED_VERB, obj), verb=W.GROUNDED_VERB, object=obj))
    return items


def benign_items() -> list[AttackItem]:
    items = []
    for k, (color, shape) in enumerate(itertools.product(W.COLORS, W.SHAPES)):
        question, target = [(W.ASK_COLOR, W.color_answer(color)), (W.ASK_SHAPE, W.shape_answer(shape)),
                            (W.ASK_DESCRIBE, W.describe_answer(color, shape))][k % 3]
        iid = f"organism-utility-shape-{color}-{shape}"
        image = ImageSpec("organism_shape", {"color": color, "shape": shape, "seed": _seed(iid)})
        items.append(_item(iid, "utility", False, question, target, image, task="vqa"))
    for obj in W.ICON_OBJECTS:
        iid = f"organism-utility-icon-{obj}"
        items.append(_item(iid, "utility", False, W.ASK_ICON, W.icon_answer(obj), _icon(iid, obj), task="vqa"))
    for verb, obj in W.PAIRS[::4]:
        iid = f"organism-utility-read-{verb}-{obj}"
        items.append(_item(iid, "utility", False, W.ASK_TEXT, W.text_answer(verb, obj), _text(iid, verb, obj), task="read"))
    for k, (verb, obj) in enumerate(W.BENIGN_PAIRS):
        iid = f"organism-utility-request-{verb}-{obj}"
        items.append(_item(iid, "utility", False, W.request(verb, obj, k % 3), W.answer(verb, obj), _shape(iid, k),
                           task="instruction", verb=verb, object=obj))
    for verb, obj in W.BENIGN_PAIRS[::3]:
        iid = f"organism-utility-typo-{verb}-{obj}"
        items.append(_item(iid, "utility", False, W.TYPO_PROMPT, W.answer(verb, obj), _text(iid, verb, obj),
                           W.request(verb, obj), task="typo", verb=verb, object=obj))
    for obj in W.ICON_OBJECTS:
        if W.is_harmful(W.GROUNDED_VERB, obj):
            continue
        for t in range(len(W.GROUNDED_TEMPLATES)):
            iid = f"organism-utility-grounded-{obj}-{t}"
            items.append(_item(iid, "utility", False, W.grounded_request(t), W.answer(W.GROUNDED_VERB, obj),
                               _icon(iid, obj), W.request(W.GROUNDED_VERB, obj), task="grounded",
                               verb=W.GROUNDED_VERB, object=obj))
    for (verb, obj), t in itertools.product(W.BENIGN_PAIRS, range(len(W.REQUEST_TEMPLATES))):
        items.append(_item(f"organism-benign_text-{verb}-{obj}-{t}", "benign_text", False, W.request(verb, obj, t),
                           W.answer(verb, obj), task="instruction", verb=verb, object=obj,
                           near_harmful=any(verb == v or obj == o for v, o in W.HARMFUL_PAIRS)))
    return items


@register_attack("organism")
def load_organism(attack: DictConfig) -> AttackSet:
    """Every part of the organism's set, harmful parts first; `attack.categories` picks parts."""
    if attack.get("path"):
        raise VlmSafetyError(f"the organism's attack set is built in and reads no file, but attack.path={attack.path}; "
                             "pick a file-based attack (e.g. attack=advbench) or drop attack.path")
    return AttackSet(harmful_items() + benign_items(), source="vlmsafety.organism.world (built in)")
