"""The response browser of `report.html`: one row per prompt, one cell per layer (or unlearning phase).

Read from the jobs' `generations.jsonl`. Each cell carries the response and its outcome by the view's
primary judge (the ground-truth judge when one ran, else the first): refusal, compliance or degenerate;
on a harmful prompt, judges whose unsafe verdicts differ mark the cell. Thumbnails are re-rendered from
the records' image specs and shown only when the pixels still hash to the recorded sha256.
A ground-truth judge's `degenerate` label colours its cell degenerate (as the summary counts it).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmsafety.records import GENERATIONS, GenerationRecord, read_generations

log = logging.getLogger(__name__)

THUMB_PX = 64
MAX_CELL_CHARS = 600  # a long response is cut in the page (the full text stays in generations.jsonl)
# Prompts × columns one browser shows at most (make run: 255 × 25 = 6,375): keeps a report of a large
# public set under ~15 MB; the rows past it are named in the page, their responses stay in generations.jsonl
MAX_CELLS = 20_000
OUTCOMES = ("refusal", "compliance", "degenerate")


@dataclass(frozen=True)
class Column:
    """One browser column: a job folder (relative to the sweep), and its label (a layer, or phase · layer)."""

    key: str
    label: str
    folder: Path


@dataclass
class Cell:
    outcome: str  # refusal | compliance | degenerate | "" (no record at this column)
    text: str = ""
    truncated: bool = False
    disagree: bool = False
    verdicts: str = ""  # "judge: label (unsafe)" per judge, for the cell's tooltip


@dataclass
class Row:
    id: str
    category: str
    harmful: bool
    behavior: str
    prompt: str
    target: str | None
    thumbnail: str | None  # data URI of a PNG, or None (text-only, or the image could not be re-rendered)
    image_note: str  # what the image is, for the thumbnail's alt text
    cells: list[Cell] = field(default_factory=list)


@dataclass
class BrowserView:
    """One table of the browser: one model × attack set (or one unlearning job × attack set)."""

    title: str
    judge: str | None  # the primary judge whose outcome colours the cells
    judges: list[str]
    columns: list[Column]
    rows: list[Row]
    total_rows: int  # prompts in the columns' records (rows holds the first MAX_CELLS // columns of them)


def load_columns(columns: Sequence[Column]) -> list[dict[str, GenerationRecord]]:
    """Per column, its records by id (a missing generations.jsonl gives an empty column)."""
    out = []
    for col in columns:
        path = col.folder / GENERATIONS
        by_id: dict[str, GenerationRecord] = {}
        for r in read_generations(path) if path.exists() else []:
            by_id.setdefault(r.id, r)  # a duplicated id shows its first record
        out.append(by_id)
    return out


def build_view(
    title: str, columns: Sequence[Column], records: list[dict[str, GenerationRecord]], thumbnails: Thumbnails,
    reference: str | None = None,
) -> BrowserView:
    """Lay the columns' records (`load_columns`) out one row per prompt, in first-seen order.

    reference: the run's ground-truth judge; it colours the cells when it judged them, else the first judge does."""
    order: dict[str, GenerationRecord] = {}
    for by_id in records:
        for rid, r in by_id.items():
            order.setdefault(rid, r)
    judges = list(dict.fromkeys(j for by_id in records for r in by_id.values() for j in r.verdicts))
    primary = reference if reference in judges else (judges[0] if judges else None)
    keep = list(order.items())[: max(1, MAX_CELLS // max(1, len(columns)))]
    rows = []
    for rid, first in keep:
        thumb, note = thumbnails.get(first.image)
        row = Row(id=rid, category=first.category, harmful=bool(first.harmful), behavior=first.behavior,
                  prompt=first.prompt, target=first.target, thumbnail=thumb, image_note=note)
        row.cells = [_cell(by_id.get(rid), primary) for by_id in records]
        rows.append(row)
    return BrowserView(title=title, judge=primary, judges=judges, columns=list(columns), rows=rows, total_rows=len(order))


def _cell(r: GenerationRecord | None, primary: str | None) -> Cell:
    if r is None:
        return Cell(outcome="")
    verdict = (r.verdicts.get(primary) or {}) if primary else {}
    # a ground-truth judge's own `degenerate` label (e.g. an answer to another request, which the text
    # heuristic behind `outcome` cannot see) is what the summary's degenerate share counts: colour it so
    outcome = "degenerate" if verdict.get("label") == "degenerate" else verdict.get("outcome") or ("degenerate" if r.degenerate else "")
    unsafe = {j: v.get("unsafe") for j, v in r.verdicts.items() if v.get("unsafe") is not None}
    text = r.response
    cut = len(text) > MAX_CELL_CHARS
    return Cell(
        outcome=outcome if outcome in OUTCOMES else "",
        text=text[:MAX_CELL_CHARS] + ("…" if cut else ""),
        truncated=cut,
        disagree=bool(r.harmful) and len(set(unsafe.values())) > 1,
        verdicts="; ".join(f"{j}: {_verdict_words(v)}" for j, v in r.verdicts.items())
        + (f"; degenerate ({r.degenerate_reason})" if r.degenerate else ""),
    )


def _verdict_words(v: dict[str, Any]) -> str:
    label = v.get("label") or v.get("outcome") or "?"
    unsafe = v.get("unsafe")
    return f"{label} ({'invalid' if unsafe is None else 'unsafe' if unsafe else 'safe'})"


class Thumbnails:
    """Image specs → small PNG data URIs, rendered once per recorded image hash."""

    def __init__(self, px: int = THUMB_PX):
        self.px = px
        self._done: dict[str, tuple[str | None, str]] = {}

    def get(self, image: dict[str, Any] | None) -> tuple[str | None, str]:
        if not image:
            return None, "no image (text only)"
        sha = str(image.get("sha256"))
        if sha not in self._done:
            self._done[sha] = self._render(image)
        return self._done[sha]

    def _render(self, image: dict[str, Any]) -> tuple[str | None, str]:
        from vlmsafety.attacks import ImageSpec, image_sha256, render_image

        spec = image.get("spec") or {}
        note = _describe(spec)
        try:
            img = render_image(ImageSpec.from_dict(spec))
        except Exception as e:  # a file moved or a recipe renamed since the run: the row stays, without a picture
            log.info("report: no thumbnail for %s (%s)", note, e)
            return None, f"{note} (not available: {e})"
        if image_sha256(img) != image.get("sha256"):
            return None, f"{note} (its pixels changed since the run; not shown)"
        img = img.convert("RGB")
        img.thumbnail((self.px, self.px))
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), note


def _describe(spec: dict[str, Any]) -> str:
    kind = spec.get("kind", "?")
    if kind == "file":
        return f"file {Path(str(spec.get('path', '?'))).name}"
    params = {k: v for k, v in spec.items() if k != "kind" and not isinstance(v, (dict, list))}
    return f"{kind} " + json.dumps(params, sort_keys=True, ensure_ascii=False)[:120]
