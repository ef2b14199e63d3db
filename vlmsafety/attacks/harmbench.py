"""HarmBench behaviors (Mazeika et al. 2024; centerforaisafety/HarmBench `data/behavior_datasets/`).

Text CSV (`harmbench_behaviors_text_all.csv`, or its _val / _test splits): Behavior,
FunctionalCategory, SemanticCategory, Tags, ContextString, BehaviorID. Contextual behaviors are sent
as HarmBench's direct-request baseline sends them: "{ContextString}\\n\\n---\\n\\n{Behavior}".
Multimodal CSV (`harmbench_behaviors_multimodal_all.csv`): Behavior, FunctionalCategory,
SemanticCategory, BehaviorID, ImageFileName, ImageDescription, RedactedImageDescription (Tags and
ContextString are read when present); ImageFileName lives in `attack.image_dir`
(HarmBench's `data/multimodal_behavior_images/`).
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import Row, check_image, collect
from vlmsafety.attacks.sources import image_root, open_table

TEXT_FILE = "harmbench_behaviors_text_all.csv"
TEXT_COLUMNS = ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID")
MM_FILE = "harmbench_behaviors_multimodal_all.csv"
MM_COLUMNS = (
    "Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID",
    "ImageFileName", "ImageDescription", "RedactedImageDescription",
)
MM_OPTIONAL = ("Tags", "ContextString")
UPSTREAM = "https://github.com/centerforaisafety/HarmBench (data/behavior_datasets/)"


def _keep(attack: DictConfig, row: Row) -> bool:
    wanted = attack.get("functional_categories")
    return wanted is None or row.text("FunctionalCategory") in [str(w) for w in wanted]


def _item(row: Row, text: str, image: ImageSpec | None, meta: dict, context: str | None = None) -> AttackItem:
    return AttackItem(
        id=row.text("BehaviorID"), source="harmbench", category=row.text("SemanticCategory"), harmful=True,
        text=text, image=image, behavior=row.text("Behavior"),
        context=context if context is not None else row.text("ContextString", required=False),
        meta={"functional_category": row.text("FunctionalCategory"), "tags": row.text("Tags", required=False), **meta},
    )


@register_attack("harmbench")
def load_harmbench(attack: DictConfig) -> AttackSet:
    """HarmBench text behaviors; id = BehaviorID, category = SemanticCategory; image per `attack.image`."""
    table = open_table(attack, TEXT_FILE, TEXT_COLUMNS, upstream=UPSTREAM)
    images = TextImagePolicy.from_cfg(attack)

    def build(row: Row) -> AttackItem | None:
        if not _keep(attack, row):
            return None
        behavior, context = row.text("Behavior"), row.text("ContextString", required=False)
        text = f"{context}\n\n---\n\n{behavior}" if context else behavior
        return _item(row, text, images.spec(row.text("BehaviorID")), {})

    return collect(attack, table.rows, build, table.source)


@register_attack("harmbench_multimodal")
def load_harmbench_multimodal(attack: DictConfig) -> AttackSet:
    """HarmBench multimodal behaviors: Behavior as text with its ImageFileName from `attack.image_dir`."""
    table = open_table(attack, MM_FILE, MM_COLUMNS, MM_OPTIONAL, upstream=UPSTREAM)
    folder = image_root(attack, "image_dir", table)  # unset: the CSV's own folder

    def build(row: Row) -> AttackItem | None:
        if not _keep(attack, row):
            return None
        path = folder / row.text("ImageFileName")
        check_image(path)
        meta = {
            "image_description": row.text("ImageDescription", required=False),
            "redacted_image_description": row.text("RedactedImageDescription", required=False),
        }
        # the classifier's context for a multimodal behaviour is its RedactedImageDescription, as HarmBench's
        # eval_utils.py compute_results_classifier gives it (the VLM itself sees the image, not this text)
        context = row.text("RedactedImageDescription", required=False) or None
        return _item(row, row.text("Behavior"), ImageSpec("file", {"path": str(path)}), meta, context)

    return collect(attack, table.rows, build, table.source)
