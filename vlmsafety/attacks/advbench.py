"""AdvBench `harmful_behaviors.csv` (Zou et al. 2023; llm-attacks `data/advbench/`): columns goal, target.

All 520 rows are harmful requests without categories. With `attack.image: folder` and a COCO folder
as `attack.image_dir`, each prompt gets a seeded random image: paper 1's AdvBench-COCO ("AC") set.
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import Row, collect
from vlmsafety.attacks.sources import open_table

FILE = "harmful_behaviors.csv"
COLUMNS = ("goal", "target")
UPSTREAM = "https://github.com/llm-attacks/llm-attacks (data/advbench/)"
CATEGORY = "harmful"  # AdvBench has no categories


@register_attack("advbench")
def load_advbench(attack: DictConfig) -> AttackSet:
    """Items `advbench-NNN` (NNN = 1-based data row): text = goal, target = target, image per `attack.image`."""
    table = open_table(attack, FILE, COLUMNS, upstream=UPSTREAM)
    images = TextImagePolicy.from_cfg(attack)

    def build(row: Row) -> AttackItem:
        item_id = f"advbench-{row.number:03d}"
        return AttackItem(
            id=item_id, source="advbench", category=CATEGORY, harmful=True, text=row.text("goal"),
            image=images.spec(item_id), target=row.text("target", required=False),
        )

    return collect(attack, table.rows, build, table.source)

