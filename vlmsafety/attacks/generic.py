"""Any CSV or JSONL prompt file, read through a field mapping in the attack's YAML (`attack.fields`).

`fields` maps each item field to the column (CSV) or key (JSONL) that holds it: text (required), and
optionally id, category, harmful (a true/false column), behavior, target, context and image (a path
relative to `attack.image_root`, default the file's folder). Unmapped fields take `default_category`
/ `default_harmful`; rows without an image column get one per `attack.image` (none, blank, folder...).
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.attacks.pairing import TextImagePolicy
from vlmsafety.attacks.rows import Row, check_image, collect, read_csv, read_jsonl
from vlmsafety.attacks.sources import Reader, attack_name, configured_path, image_root, open_table
from vlmsafety.errors import VlmSafetyError

READERS: dict[str, Reader] = {"csv": read_csv, "jsonl": read_jsonl}
FIELDS = ("text", "id", "category", "harmful", "behavior", "target", "context", "image")


@register_attack("generic")
def load_generic(attack: DictConfig) -> AttackSet:
    """Items `<name>-<id column or row number>` from `attack.path` through `attack.fields`."""
    name = attack_name(attack)
    fields = {k: (None if v is None else str(v)) for k, v in (attack.get("fields") or {}).items()}
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown or not fields.get("text"):
        raise VlmSafetyError(
            f"attack {name!r}: attack.fields must map text (required) and only {', '.join(FIELDS)} to columns; "
            f"got {fields or 'nothing'}"
        )
    path = configured_path(attack)
    fmt = attack.get("format") or (path.suffix.lstrip(".").lower() if path and path.suffix else "csv")
    if fmt not in READERS:
        raise VlmSafetyError(f"attack {name!r}: format={fmt!r} is not supported; use csv or jsonl (attack.format)")
    columns = [c for c in fields.values() if c]
    table = open_table(attack, f"prompts.{fmt}", columns, upstream="your own data", reader=READERS[fmt])
    images = TextImagePolicy.from_cfg(attack)
    root = image_root(attack, "image_root", table) if fields.get("image") else None
    default_harmful = bool(attack.get("default_harmful", True))
    default_category = str(attack.get("default_category", "generic"))

    def build(row: Row) -> AttackItem:
        def get(field: str) -> str | None:
            return row.text(fields[field], required=False, number_ok=field == "id") if fields.get(field) else None

        item_id = f"{name}-{get('id') or row.number}"
        if get("image"):
            path = root / get("image")
            check_image(path)
            image = ImageSpec("file", {"path": str(path)})
        else:
            image = images.spec(item_id)
        return AttackItem(
            id=item_id, source=name, category=get("category") or default_category,
            harmful=row.flag(fields["harmful"]) if fields.get("harmful") else default_harmful,
            text=row.text(fields["text"]), image=image, behavior=get("behavior"), target=get("target"),
            context=get("context"),
        )

    return collect(attack, table.rows, build, table.source)
