"""AdvBench `harmful_behaviors.csv` (Zou et al. 2023; llm-attacks `data/advbench/`): columns goal, target.

All 520 rows are harmful requests without categories. With `attack.image: folder` and a COCO folder
as `attack.image_dir`, each prompt gets a seeded random image: paper 1's AdvBench-COCO ("AC") set.
A CSV that already pairs its rows (an extra column `image`: a file path relative to the CSV's
folder, e.g. a saved AC pairing or tests/fixtures/attacks/advbench_coco/) keeps its own pairs under
`attack.image: folder`, and `attack.image_dir` / `image_seed` are not used; under any other
`attack.image` the column is ignored.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import Row, check_image, collect
from vlmsafety.attacks.sources import Table, attack_name, open_table
from vlmsafety.errors import VlmSafetyError
from vlmsafety.ui import DETAIL

log = logging.getLogger(__name__)

FILE = "harmful_behaviors.csv"
COLUMNS = ("goal", "target")
PAIRED = "image"  # the project's column for a pre-paired AdvBench-COCO file (not an upstream column)
UPSTREAM = "https://github.com/llm-attacks/llm-attacks (data/advbench/)"
CATEGORY = "harmful"  # AdvBench has no categories


@register_attack("advbench")
def load_advbench(attack: DictConfig) -> AttackSet:
    """Items `advbench-NNN` (NNN = 1-based data row): text = goal, target = target, image per `attack.image`."""
    table = open_table(attack, FILE, COLUMNS, (PAIRED,), upstream=UPSTREAM)
    paired = _paired(attack, table)
    images = None if paired else TextImagePolicy.from_cfg(attack)

    def build(row: Row) -> AttackItem:
        item_id = f"advbench-{row.number:03d}"
        if images is not None:
            image = images.spec(item_id)
        else:
            path = table.folder / row.text(PAIRED)  # type: ignore[operator]  # _paired: a local file
            check_image(path)
            image = ImageSpec("file", {"path": str(path)})
        return AttackItem(
            id=item_id, source="advbench", category=CATEGORY, harmful=True, text=row.text("goal"),
            image=image, target=row.text("target", required=False),
        )

    return collect(attack, table.rows, build, table.source)


def _paired(attack: DictConfig, table: Table) -> bool:
    """Whether the rows name their own images: a local file with an `image` column, under `attack.image: folder`."""
    if str(attack.get("image") or "none") != "folder" or not any(PAIRED in row.values for row in table.rows):
        return False
    if table.folder is None:
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: rows from {table.source} name image files; "
                             "use a local copy of the file (attack.path) next to its images")
    log.info("%s: each row names its image (column %r, relative to %s); attack.image_dir and image_seed are not used",
             table.source, PAIRED, table.folder, extra=DETAIL)  # the job's log file, not the console
    return True
