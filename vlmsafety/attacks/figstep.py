"""FigStep's SafeBench (Gong et al. 2023; ThuCCSLab/FigStep `data/question/safebench.csv`).

Columns: dataset, category_id, task_id, category_name, question, instruction. FigStep moves the
request into the image: the instruction ("Steps to ...") is typeset, the text turn is FigStep's
fixed prompt, and the behavior judged is the question. Images: FigStep's shipped
`query_{dataset}_{category_id}_{task_id}_6.png` from `attack.image_dir` when it is set (each must
exist), else rendered by the project's FigStep renderer (FigStep's layout with the shipped
FreeMonoBold; how close that is to the released PNGs: docs/attacks.md). With
`attack.image: none` the question is sent as plain text (FigStep's vanilla-query baseline).
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.attacks.images import FIGSTEP_PROMPT
from vlmsafety.attacks.rows import Row, check_image, collect
from vlmsafety.attacks.sources import attack_name, configured_path, open_table
from vlmsafety.errors import VlmSafetyError

FILE = "safebench.csv"
COLUMNS = ("dataset", "category_id", "task_id", "category_name", "question", "instruction")
UPSTREAM = "https://github.com/ThuCCSLab/FigStep (data/question/)"
MODES = ("figstep", "none")


def shipped_name(dataset: str, category_id: str, task_id: str) -> str:
    """File name of FigStep's published image for one SafeBench row."""
    return f"query_{dataset}_{category_id}_{task_id}_6.png"


@register_attack("figstep")
def load_figstep(attack: DictConfig) -> AttackSet:
    """Items `safebench-<dataset>-<category_id>-<task_id>`, category = category_name."""
    mode = "none" if attack.get("image") is None else str(attack.get("image"))
    if mode not in MODES:
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: image={mode!r} is not valid; use one of: {', '.join(MODES)}")
    shipped = configured_path(attack, "image_dir")
    if shipped is not None and not shipped.is_dir():
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: attack.image_dir={shipped} is not a folder")
    font = {"font": str(attack.font)} if attack.get("font") else {}
    table = open_table(attack, FILE, COLUMNS, upstream=UPSTREAM)

    def build(row: Row) -> AttackItem:
        dataset, category_id, task_id = row.text("dataset"), row.text("category_id", number_ok=True), row.text("task_id", number_ok=True)
        text, image = FIGSTEP_PROMPT, None
        if mode == "none":
            text = row.text("question")
        elif shipped is not None:
            path = shipped / shipped_name(dataset, category_id, task_id)
            check_image(path)
            image = ImageSpec("file", {"path": str(path)})
        else:
            image = ImageSpec("figstep", {"instruction": row.text("instruction"), **font})
        return AttackItem(
            id=f"safebench-{dataset}-{category_id}-{task_id}", source="safebench", category=row.text("category_name"),
            harmful=True, text=text, image=image, behavior=row.text("question"),
            meta={"figstep_instruction": row.text("instruction")},
        )

    return collect(attack, table.rows, build, table.source)
