"""JailbreakBench JBB-Behaviors (Chao et al. 2024; hub `JailbreakBench/JBB-Behaviors`, folder `data/`).

`harmful-behaviors.csv` (100 misuse behaviors) and `benign-behaviors.csv` (100 thematically matched
benign ones, for over-refusal): Goal, Target, Behavior, Category, Source (plus an Index column).
`attack.split`: harmful | benign | both; `attack.path` is the folder holding both files, or one file
(then split must say which one it is).
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import Row, collect
from vlmsafety.attacks.sources import attack_name, configured_path, open_table
from vlmsafety.errors import VlmSafetyError

FILES = {"harmful": "harmful-behaviors.csv", "benign": "benign-behaviors.csv"}
COLUMNS = ("Goal", "Target", "Behavior", "Category", "Source")
SPLITS = ("harmful", "benign", "both")
UPSTREAM = "https://huggingface.co/datasets/JailbreakBench/JBB-Behaviors (data/)"


@register_attack("jailbreakbench")
def load_jailbreakbench(attack: DictConfig) -> AttackSet:
    """Items `jbb-<split>-<Index>`: text = Goal, target = Target, category = Category; harmful = split."""
    split = str(attack.get("split", "both"))
    if split not in SPLITS:
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: split={split!r} is not valid; use one of: {', '.join(SPLITS)}")
    path = configured_path(attack)
    if split == "both" and path is not None and path.is_file():
        raise VlmSafetyError(
            f"attack {attack_name(attack)!r}: split=both needs attack.path to be the folder holding "
            f"{' and '.join(FILES.values())}, got the file {path}; or set attack.split to harmful or benign"
        )
    images = TextImagePolicy.from_cfg(attack)
    sets = []
    for name in ("harmful", "benign") if split == "both" else (split,):
        table = open_table(attack, FILES[name], COLUMNS, ("Index",), upstream=UPSTREAM, hub_split=name)

        def build(row: Row, name: str = name) -> AttackItem:
            item_id = f"jbb-{name}-{row.text('Index', required=False, number_ok=True) or row.number}"
            return AttackItem(
                id=item_id, source="jailbreakbench", category=row.text("Category"), harmful=name == "harmful",
                text=row.text("Goal"), image=images.spec(item_id), target=row.text("Target", required=False),
                meta={"behavior": row.text("Behavior"), "origin": row.text("Source", required=False)},
            )

        sets.append(collect(attack, table.rows, build, table.source))
    return AttackSet([it for s in sets for it in s.items], sum(s.skipped for s in sets), ", ".join(s.source for s in sets))
