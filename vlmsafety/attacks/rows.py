"""Reading upstream attack files row by row, with one-line errors that name the file and the row.

How rows are numbered in messages: a CSV "data row N" is the N-th record after the header, counted
from 1 (the physical line is given too); a JSONL "line N" is the N-th line, from 1; a JSON "entry
'K'" is the value under key K of the file's top-level object; a hub "row N" counts from 1.

Problems with the whole file (absent, empty, a Git LFS pointer, a missing CSV column, not parseable)
always raise; so does an image that is a Git LFS pointer (the whole folder was not pulled, so skipping
rows would only hide that).
Problems confined to one row (an empty or non-UTF-8 value, a missing or corrupt image, a duplicate
id) raise too, or with `attack.on_bad_row=skip` drop the row, log it once and count it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from PIL import Image

from vlmsafety.attacks.base import AttackItem, AttackSet
from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import check_not_lfs_pointer
from vlmsafety.limits import IMAGES

log = logging.getLogger(__name__)

ON_BAD_ROW = ("error", "skip")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class BadRow(Exception):
    """A problem confined to one row; `collect` turns it into an error or a skip."""


@dataclass(frozen=True)
class Row:
    """One record of an upstream file: its values by column, and where it is (for messages)."""

    source: str  # the file, or hub dataset, the row comes from
    number: int  # position among the file's records, from 1 (the header is not a record)
    where: str  # e.g. "data row 3 (1-based, after the header; line 4)"
    values: Mapping[str, Any]
    problem: str | None = None  # set by the reader when the record itself is malformed
    key: str | None = None  # a JSON entry's key (the dataset's own id for the row)

    def text(self, column: str, *, required: bool = True, number_ok: bool = False) -> str | None:
        """The value of `column` as text; BadRow when it is not text (a whole number only when `number_ok`,
        for ids), not UTF-8, or empty and `required`."""
        value = self.values.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise BadRow(f"the value of {column!r} is empty")
            return None
        if isinstance(value, int) and not isinstance(value, bool) and number_ok:
            value = str(value)  # an id written as a number
        elif not isinstance(value, str):
            kind = "true/false" if isinstance(value, bool) else f"a JSON {type(value).__name__}"
            raise BadRow(f"the value of {column!r} is {kind} ({_printable(repr(value))[:40]}), expected text")
        if has_undecodable(value):
            raise BadRow(f"the value of {column!r} is not valid UTF-8 text (re-save the file as UTF-8)")
        return value

    def flag(self, column: str) -> bool:
        """The value of `column` as a boolean (True/False, 1/0, yes/no in any case)."""
        value = self.values.get(column)
        if isinstance(value, bool):
            return value
        word = (self.text(column) or "").strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise BadRow(f"the value of {column!r} is {word!r}, expected True or False")


def has_undecodable(s: str) -> bool:
    # Files are decoded with errors="surrogateescape": each byte that is not UTF-8 becomes U+DC80..U+DCFF.
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _printable(s: str) -> str:
    """`s` with undecodable bytes shown as \\xNN, so that a message about them can be printed."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _names(*groups: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(name for group in groups for name in group))


def _read_bytes(path: Path, expected: str) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VlmSafetyError(f"file not found: {path}") from None
    except OSError as e:
        raise VlmSafetyError(f"cannot read {path}: {e.strerror or e}") from None
    check_not_lfs_pointer(path, raw)
    if not raw.strip():
        raise VlmSafetyError(f"{path} is empty; expected {expected}")
    return raw


# ---- readers: each returns every row of a file, or raises for a problem with the whole file ----------


def read_csv(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> list[Row]:
    """Rows of a CSV file with a header row; the header must name every `required` column."""
    expected = f"a CSV header with the columns {_names(required, optional)} and data rows"
    text = _read_bytes(path, expected).decode("utf-8-sig", errors="surrogateescape")
    # Python's csv refuses fields over 128 KiB as a whole-file error; a long field is one long prompt,
    # which the model's context check (prompt_fit.py) refuses or skips as a row
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
        records = [(rec, reader.line_num) for rec in reader if any(f.strip() for f in rec)]
    except csv.Error as e:
        raise VlmSafetyError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
    if has_undecodable("".join(header)):
        raise VlmSafetyError(f"{path}, header row: not valid UTF-8 text; re-save the file as UTF-8")
    missing = [c for c in required if c not in header]
    if missing:
        raise VlmSafetyError(
            f"{path}, header row: missing column(s) {', '.join(missing)}; found {', '.join(header)}; "
            f"expected {_names(required, optional)} (upstream names, case-sensitive)"
        )
    if not records:
        raise VlmSafetyError(f"{path} has a header but no data rows")
    rows = []
    for n, (rec, line) in enumerate(records, start=1):
        where = f"data row {n} (1-based, after the header; line {line})"
        problem = None if len(rec) == len(header) else f"has {len(rec)} fields, the header has {len(header)}"
        rows.append(Row(str(path), n, where, dict(zip(header, rec, strict=False)), problem))
    return rows


def read_jsonl(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> list[Row]:
    """Rows of a JSON Lines file: one object per non-blank line, holding every `required` key."""
    raw = _read_bytes(path, f"one JSON object per line with the keys {_names(required, optional)}")
    lines = [(n, line) for n, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1) if line.strip()]
    return [_object_row(str(path), k, n, line.decode("utf-8", "surrogateescape"), required) for k, (n, line) in enumerate(lines, 1)]


def _object_row(source: str, number: int, line: int, text: str, required: Sequence[str]) -> Row:
    where = f"line {line} (1-based)"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return Row(source, number, where, {}, f"not valid JSON ({e.msg} at column {e.colno})")
    return _entry_row(source, number, where, obj, required)


def _entry_row(
    source: str, number: int, where: str, obj: Any, required: Sequence[str], key: str | None = None
) -> Row:
    if not isinstance(obj, dict):
        return Row(source, number, where, {}, f"is a JSON {type(obj).__name__}, expected an object", key)
    missing = [k for k in required if k not in obj]
    return Row(source, number, where, obj, f"missing key(s) {', '.join(missing)}" if missing else None, key)


def read_json_entries(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> list[Row]:
    """Rows of a JSON file whose top level is an object of entries {key: {field: value}}."""
    raw = _read_bytes(path, f"a JSON object of entries with the keys {_names(required, optional)}")
    try:
        top = json.loads(raw.decode("utf-8-sig", errors="surrogateescape"))
    except json.JSONDecodeError as e:
        raise VlmSafetyError(f"{path}, line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(top, dict) or not top:
        raise VlmSafetyError(f"{path}: expected a non-empty JSON object of entries {{key: {{field: value}}}}")
    return [
        _entry_row(str(path), n, f"entry {_printable(str(k))!r}", v, required, str(k))
        for n, (k, v) in enumerate(top.items(), 1)
    ]


def rows_from_records(
    source: str, columns: Sequence[str], records: Iterable[Mapping[str, Any]], required: Sequence[str]
) -> list[Row]:
    """Rows of an in-memory table (a hub dataset), checked like a CSV file's."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise VlmSafetyError(f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}")
    rows = [Row(source, n, f"row {n} (1-based)", dict(rec)) for n, rec in enumerate(records, start=1)]
    if not rows:
        raise VlmSafetyError(f"{source} has no rows")
    return rows


# ---- images a row points at ---------------------------------------------------------------------------

_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) of files already verified


def check_image(path: Path) -> None:
    """BadRow unless `path` is an image file Pillow can decode, within the image limits (vlmsafety/limits.py).

    A Git LFS pointer raises VlmSafetyError instead, whatever `on_bad_row` says.
    """
    try:
        st = os.stat(path)
    except OSError:
        raise BadRow(f"image file not found: {path}") from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    check_not_lfs_pointer(path)
    try:
        with Image.open(path) as img:
            too_large = IMAGES.problem(*img.size)  # from the header: a valid but huge file is not "corrupt"
            if too_large is None:
                img.load()  # every pixel: a truncated JPEG passes verify() and fails only here
    except Image.DecompressionBombError as e:
        raise BadRow(f"image file {path} is too large ({e})") from None
    except Exception as e:  # Pillow raises many types for broken files; every one means "corrupt"
        detail = type(e).__name__ if str(path) in str(e) else f"{type(e).__name__}: {e}"
        raise BadRow(f"image file {path} is corrupt or not an image ({detail})") from None
    if too_large is not None:
        raise BadRow(f"image file {path}: {too_large}")
    _VERIFIED.add(key)


# ---- rows → items -------------------------------------------------------------------------------------

_LOGGED: set[str] = set()  # skipped rows already logged in this process (a sweep loads the set per job)


def on_bad_row(attack: DictConfig) -> str:
    policy = str(attack.get("on_bad_row", "error"))
    if policy not in ON_BAD_ROW:
        raise VlmSafetyError(f"attack.on_bad_row={policy!r} is not valid; use one of: {', '.join(ON_BAD_ROW)}")
    return policy


def collect(
    attack: DictConfig, rows: Iterable[Row], build: Callable[[Row], AttackItem | None], source: str
) -> AttackSet:
    """Items built from `rows` by `build` (None = row left out on purpose), under `attack.on_bad_row`."""
    policy = on_bad_row(attack)
    items: list[AttackItem] = []
    first_seen: dict[str, str] = {}
    skipped = 0
    for row in rows:
        try:
            if row.problem:
                raise BadRow(row.problem)
            item = build(row)
            if item is not None and item.id in first_seen:
                raise BadRow(f"duplicate id {item.id!r} (first at {first_seen[item.id]})")
        except BadRow as e:
            message = f"{row.source}, {row.where}: {_printable(str(e))}"
            if policy == "error":
                raise VlmSafetyError(f"{message}; fix the row or set attack.on_bad_row=skip") from None
            skipped += 1
            if message not in _LOGGED:
                _LOGGED.add(message)
                log.warning("skipped %s", message)
            continue
        if item is not None:
            first_seen[item.id] = row.where
            items.append(item)
    if skipped:
        log.warning("%s: skipped %d bad row(s) (attack.on_bad_row=skip)", source, skipped)
    return AttackSet(items, skipped, source)
