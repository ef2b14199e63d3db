"""Where an attack set's rows come from: a local file (`attack.path`) or, failing that, the hub.

`attack.path` may name the file itself or the folder that holds it under its upstream name, so one
folder holding several sets' files serves them all (`attack.path=my_data/` for a sweep over
attacks). When no local file exists and `attack.hub.id` is set, rows come from
`datasets.load_dataset` (optional extra `vlmsafety[hub]`), unless the hub is switched off
(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE). Files are parsed, never executed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from vlmsafety.attacks.rows import Row, read_csv, rows_from_records
from vlmsafety.errors import VlmSafetyError

Reader = Callable[[Path, Sequence[str], Sequence[str]], list[Row]]


@dataclass(frozen=True)
class Table:
    """The rows of one upstream file, where they came from, and the folder relative paths start from."""

    rows: list[Row]
    source: str  # file path, or "hub:<id>[/<name>]:<split>"
    folder: Path | None  # the file's folder; None for hub rows


def attack_name(attack: DictConfig) -> str:
    return str(attack.get("name") or attack.get("loader"))


def configured_path(attack: DictConfig, key: str = "path") -> Path | None:
    """`attack.<key>` as a Path (user folder expanded), or None when unset."""
    value = attack.get(key)
    return None if value in (None, "") else Path(os.path.expanduser(str(value)))


def local_file(attack: DictConfig, file_name: str) -> Path | None:
    """The file `attack.path` points at: itself, or `file_name` inside it when it is a folder."""
    path = configured_path(attack)
    if path is None:
        return None
    return path / file_name if path.is_dir() else path


def open_table(
    attack: DictConfig,
    file_name: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    upstream: str,
    reader: Reader = read_csv,
    hub_split: str | None = None,
) -> Table:
    """The rows of the set's upstream file `file_name`: from `attack.path` if it exists, else the hub.

    upstream: where users get the file (named in the error when there is none).
    hub_split: the hub split holding the same rows (default `attack.hub.split`).
    """
    file = local_file(attack, file_name)
    if file is not None and file.is_file():
        return Table(reader(file, required, optional), str(file), file.parent)
    hub = attack.get("hub") or {}
    missing = f"no file at {file}" if file is not None else "attack.path is not set"
    if not hub.get("id"):
        raise VlmSafetyError(
            f"attack {attack_name(attack)!r}: {missing}; download {file_name} from {upstream} "
            f"and set attack.path (or data_root) to it"
        )
    return _hub_table(attack, str(hub["id"]), hub.get("name"), hub_split or hub.get("split") or "train",
                      required, missing, file_name, upstream)


def _hub_table(
    attack: DictConfig, hub_id: str, name: str | None, split: str, required: Sequence[str],
    missing: str, file_name: str, upstream: str,
) -> Table:
    source = f"hub:{hub_id}{'/' + name if name else ''}:{split}"
    fallback = f"download {file_name} from {upstream} and set attack.path (or data_root) to it"
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "").lower() in ("1", "true", "yes")]
    if offline:
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: {missing} and the hub is off ({offline[0]}=1); {fallback}")
    try:
        import datasets  # optional extra: pip install 'vlmsafety[hub]'
    except ImportError:
        raise VlmSafetyError(
            f"attack {attack_name(attack)!r}: {missing}; reading {source} needs `pip install 'vlmsafety[hub]'`, or {fallback}"
        ) from None
    try:
        ds = datasets.load_dataset(hub_id, name, split=split)
    except Exception as e:  # network, auth and format errors all mean "use a local file instead"
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: cannot load {source} ({first_line}); {fallback}") from None
    return Table(rows_from_records(source, list(ds.column_names), ds, required), source, None)


def image_root(attack: DictConfig, key: str, table: Table) -> Path:
    """The folder that relative image paths start from: `attack.<key>` if set, else the table's folder."""
    root = configured_path(attack, key) or table.folder
    if root is None:
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: rows from {table.source} name image files; "
                             f"set attack.{key} to the local folder that holds them")
    if not root.is_dir():
        raise VlmSafetyError(f"attack {attack_name(attack)!r}: attack.{key}={root} is not a folder")
    return root
