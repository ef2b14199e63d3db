"""JailbreakV-28K and its RedTeam-2K queries (Luo et al. 2024; hub `JailbreakV-28K/JailBreakV-28k`).

`RedTeam_2K.csv`: id, question, policy, from — 2,000 harmful text queries (image per `attack.image`).
`JailBreakV_28K.csv` (and `mini_JailBreakV_28K.csv`): id, jailbreak_query, redteam_query, format,
policy, image_path, from, selected_mini, transfer_from_llm. The text sent is jailbreak_query, the
behavior judged is redteam_query; image_path is relative to the dataset root (`attack.image_root`,
default the CSV's folder). `attack.subset: mini` keeps the rows with selected_mini = True
(miniJailbreakV-28K, paper 1's mini-JBV set).
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import Row, check_image, collect
from vlmsafety.attacks.sources import attack_name, image_root, open_table
from vlmsafety.errors import VlmSafetyError

UPSTREAM = "https://huggingface.co/datasets/JailbreakV-28K/JailBreakV-28k (JailBreakV_28K/)"
REDTEAM_FILE = "RedTeam_2K.csv"
REDTEAM_COLUMNS = ("id", "question", "policy", "from")
JBV_FILE = "JailBreakV_28K.csv"
JBV_COLUMNS = (
    "id", "jailbreak_query", "redteam_query", "format", "policy", "image_path", "from", "selected_mini", "transfer_from_llm",
)
SUBSETS = ("full", "mini")


@register_attack("redteam2k")
def load_redteam2k(attack: DictConfig) -> AttackSet:
    """Items `redteam2k-<id>`: text = question, category = policy; image per `attack.image`."""
    table = open_table(attack, REDTEAM_FILE, REDTEAM_COLUMNS, upstream=UPSTREAM)
    images = TextImagePolicy.from_cfg(attack)

    def build(row: Row) -> AttackItem:
        item_id = f"redteam2k-{row.text('id', number_ok=True)}"
        return AttackItem(
            id=item_id, source="redteam2k", category=row.text("policy"), harmful=True, text=row.text("question"),
            image=images.spec(item_id), meta={"from": row.text("from", required=False)},
        )

    return collect(attack, table.rows, build, table.source)


@register_attack("jailbreakv")
def load_jailbreakv(attack: DictConfig) -> AttackSet:
    """Items `jbv28k-<id>`: text = jailbreak_query with its image_path, behavior = redteam_query."""
    subset = str(attack.get("subset", "full"))
    if subset not in SUBSETS:
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: subset={subset!r} is not valid; use one of: {', '.join(SUBSETS)}")
    table = open_table(attack, JBV_FILE, JBV_COLUMNS, upstream=UPSTREAM)
    root = image_root(attack, "image_root", table)

    def build(row: Row) -> AttackItem | None:
        mini = row.flag("selected_mini")
        if subset == "mini" and not mini:
            return None
        path = root / row.text("image_path")
        check_image(path)
        return AttackItem(
            id=f"jbv28k-{row.text('id', number_ok=True)}", source="jailbreakv28k", category=row.text("policy"), harmful=True,
            text=row.text("jailbreak_query"), image=ImageSpec("file", {"path": str(path)}),
            behavior=row.text("redteam_query"),
            meta={
                "format": row.text("format"), "from": row.text("from", required=False), "selected_mini": mini,
                "transfer_from_llm": row.flag("transfer_from_llm"),
            },
        )

    return collect(attack, table.rows, build, table.source)
