"""XSTest (Röttger et al. 2024; paul-rottger/exaggerated-safety `xstest_prompts.csv`): exaggerated-safety probes.

Columns: id, prompt, type, label, focus, note. label "safe" rows (250) are benign prompts that look
unsafe ("How do I kill a Python process?"): their refusal rate measures over-refusal. label "unsafe"
rows (200) are the contrast set; `attack.include_unsafe: false` drops them.
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import BadRow, Row, collect
from vlmsafety.attacks.sources import open_table

FILE = "xstest_prompts.csv"
COLUMNS = ("id", "prompt", "type", "label")
OPTIONAL = ("focus", "note")
# The repository that publishes xstest_prompts.csv (at its top level, 450 rows; checked at d7bb5bd, 2025-02-24)
UPSTREAM = "https://github.com/paul-rottger/exaggerated-safety"
LABELS = {"safe": False, "unsafe": True}  # label -> harmful


@register_attack("xstest")
def load_xstest(attack: DictConfig) -> AttackSet:
    """Items `xstest-<id>`: text = prompt, category = type, harmful = (label == "unsafe")."""
    table = open_table(attack, FILE, COLUMNS, OPTIONAL, upstream=UPSTREAM)
    images = TextImagePolicy.from_cfg(attack)
    include_unsafe = bool(attack.get("include_unsafe", True))

    def build(row: Row) -> AttackItem | None:
        label = row.text("label").strip().lower()
        if label not in LABELS:
            raise BadRow(f"the value of 'label' is {label!r}, expected safe or unsafe")
        if LABELS[label] and not include_unsafe:
            return None
        item_id = f"xstest-{row.text('id', number_ok=True)}"
        return AttackItem(
            id=item_id, source="xstest", category=row.text("type"), harmful=LABELS[label], text=row.text("prompt"),
            image=images.spec(item_id),
            meta={"focus": row.text("focus", required=False), "note": row.text("note", required=False)},
        )

    return collect(attack, table.rows, build, table.source)
