"""File-based unlearning sources in their upstream formats: PKU-SafeRLHF, TruthfulQA, any QA JSONL, VLGuard.

Files are parsed, never executed. A row that cannot be used stops the run with the file and the row
(`on_bad_row: error`), or is dropped, logged and counted (`on_bad_row: skip`), as for attack files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from vlmsafety.attacks.base import ImageSpec
from vlmsafety.attacks.rows import BadRow, Row, check_image, read_csv, read_jsonl
from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import check_not_lfs_pointer
from vlmsafety.unlearn.data import DataSource, Example, HarmfulRequest, register_source

log = logging.getLogger(__name__)
T = TypeVar("T")


def _path(path: str | None, what: str, hint: str) -> Path:
    if not path:
        raise VlmSafetyError(f"unlearn data source {what} needs `path`; {hint}")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise VlmSafetyError(f"unlearn data source {what}: no file at {p}; {hint}")
    return p


def _collect(rows: Iterable[Row], build: Callable[[Row], list[T]], on_bad_row: str) -> list[T]:
    """Everything `build` makes of the rows; a BadRow raises (file + row) or is skipped and counted."""
    if on_bad_row not in ("error", "skip"):
        raise VlmSafetyError(f"on_bad_row={on_bad_row!r} is not valid; use error or skip")
    out: list[T] = []
    skipped = 0
    for row in rows:
        try:
            if row.problem:
                raise BadRow(row.problem)
            out += build(row)
        except BadRow as e:
            message = f"{row.source}, {row.where}: {e}"
            if on_bad_row == "error":
                raise VlmSafetyError(f"{message}; fix the row or set on_bad_row: skip in the source's node") from None
            skipped += 1
            log.warning("skipped %s", message)
    if skipped:
        log.warning("skipped %d bad row(s) (on_bad_row: skip)", skipped)
    return out


def _read_records(path: Path, required: list[str]) -> list[Row]:
    """JSONL (one object per line) or JSON (a list of objects)."""
    if path.suffix.lower() != ".json":
        return read_jsonl(path, required)
    check_not_lfs_pointer(path)
    try:
        top = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VlmSafetyError(f"{path}: not valid UTF-8 JSON ({e})") from None
    if not isinstance(top, list) or not top:
        raise VlmSafetyError(f"{path}: expected a non-empty JSON list of objects")
    rows = []
    for n, obj in enumerate(top, start=1):
        where = f"entry {n} (1-based)"
        if not isinstance(obj, dict):
            rows.append(Row(str(path), n, where, {}, f"is a JSON {type(obj).__name__}, expected an object"))
            continue
        missing = [k for k in required if k not in obj]
        rows.append(Row(str(path), n, where, obj, f"missing key(s) {', '.join(missing)}" if missing else None))
    return rows


PKU_COLUMNS = ["prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe"]
PKU_HINT = "download PKU-Alignment/PKU-SafeRLHF (a train.jsonl) and point path at it"


@register_source("pku_saferlhf")
class PkuSafeRlhf(DataSource):
    """PKU-SafeRLHF rows → one request per prompt with an unsafe response.

    Harmful answer: the unsafe response (both unsafe: the one `safer_response_id` does not name).
    Safe answer: a safe response to the same prompt if there is one, else a refusal template.
    Rows whose responses are both safe have nothing to forget and are left out (counted in the log).
    """

    def __init__(self, path: str | None = None, on_bad_row: str = "error"):
        self.path = _path(path, "pku_saferlhf", PKU_HINT)
        self.on_bad_row = on_bad_row
        self.description = str(self.path)

    def harmful(self) -> list[HarmfulRequest]:
        both_safe = 0

        def build(row: Row) -> list[HarmfulRequest]:
            nonlocal both_safe
            prompt = row.text("prompt")
            responses = [row.text("response_0"), row.text("response_1")]
            safe_flags = [row.flag("is_response_0_safe"), row.flag("is_response_1_safe")]
            unsafe = [i for i in (0, 1) if not safe_flags[i]]
            if not unsafe:
                both_safe += 1
                return []
            if len(unsafe) == 2:
                safer = row.values.get("safer_response_id")
                unsafe = [1 - int(safer)] if str(safer) in ("0", "1") else [0]
            safe = next((responses[i] for i in (0, 1) if safe_flags[i]), None)
            return [HarmfulRequest(f"pku-{row.number}", prompt, responses[unsafe[0]], safe)]

        out = _collect(_read_records(self.path, PKU_COLUMNS), build, self.on_bad_row)
        if both_safe:
            log.info("%s: %d row(s) with two safe responses left out (nothing to forget)", self.path, both_safe)
        return out


@register_source("truthfulqa")
class TruthfulQA(DataSource):
    """TruthfulQA's CSV (TruthfulQA.csv): Question → Best Answer, as normal examples."""

    def __init__(self, path: str | None = None, on_bad_row: str = "error"):
        self.path = _path(path, "truthfulqa", "download TruthfulQA.csv (sylinrl/TruthfulQA) and point path at it")
        self.on_bad_row = on_bad_row
        self.description = str(self.path)

    def normal(self) -> list[Example]:
        rows = read_csv(self.path, ["Question", "Best Answer"])
        return _collect(rows, lambda r: [Example(f"truthfulqa-{r.number}", r.text("Question"), r.text("Best Answer"))],
                        self.on_bad_row)


@register_source("qa_jsonl")
class QAJsonl(DataSource):
    """Any benign question-answer JSONL (or JSON list): `prompt_key` → `answer_key`, optional `image_key`."""

    def __init__(
        self, path: str | None = None, prompt_key: str = "question", answer_key: str = "answer",
        image_key: str | None = None, image_root: str | None = None, on_bad_row: str = "error",
    ):
        self.path = _path(path, "qa_jsonl", "point path at a JSONL file with one {question, answer} object per line")
        self.keys = (prompt_key, answer_key, image_key)
        self.image_root = Path(image_root).expanduser() if image_root else self.path.parent
        self.on_bad_row = on_bad_row
        self.description = str(self.path)

    def normal(self) -> list[Example]:
        prompt_key, answer_key, image_key = self.keys

        def build(row: Row) -> list[Example]:
            image = None
            if image_key and row.text(image_key, required=False):
                path = self.image_root / row.text(image_key)
                check_image(path)
                image = ImageSpec("file", {"path": str(path)})
            return [Example(f"qa-{row.number}", row.text(prompt_key), row.text(answer_key), image)]

        return _collect(_read_records(self.path, [prompt_key, answer_key]), build, self.on_bad_row)


@register_source("vlguard")
class VLGuard(DataSource):
    """VLGuard's train JSON: a list of {id, image, safe, harmful_category, harmful_subcategory, instr-resp}.

    As a harmful source: every unsafe instruction (on a safe image) and every instruction on an
    unsafe image, with its image and VLGuard's refusal as the safe answer. VLGuard has no harmful
    answers, so these requests add to the helpful term only (pair it with another source, or use it
    for normal data). As a normal source: safe instructions on safe images with their answers.
    """

    def __init__(self, path: str | None = None, image_root: str | None = None, on_bad_row: str = "error"):
        self.path = _path(path, "vlguard", "download VLGuard's train.json (and its images) and point path at it")
        self.image_root = Path(image_root).expanduser() if image_root else self.path.parent
        self.on_bad_row = on_bad_row
        self.description = str(self.path)

    def _pairs(self, want_harmful: bool) -> list:
        def build(row: Row) -> list:
            image_rel = row.text("image")
            path = self.image_root / image_rel
            check_image(path)
            image = ImageSpec("file", {"path": str(path)})
            safe_image = row.flag("safe")
            turns = row.values.get("instr-resp")
            if not isinstance(turns, list) or not turns:
                raise BadRow("instr-resp must be a non-empty list of {instruction, response} objects")
            out = []
            for k, turn in enumerate(turns, start=1):
                if not isinstance(turn, dict) or "response" not in turn:
                    raise BadRow(f"instr-resp item {k} has no response")
                kind = next((key for key in ("safe_instruction", "unsafe_instruction", "instruction") if key in turn), None)
                if kind is None:
                    raise BadRow(f"instr-resp item {k} has none of safe_instruction, unsafe_instruction, instruction")
                text, answer = str(turn[kind]).strip(), str(turn["response"]).strip()
                if not text or not answer:
                    raise BadRow(f"instr-resp item {k} has an empty instruction or response")
                harmful = kind == "unsafe_instruction" or (kind == "instruction" and not safe_image)
                item_id = f"vlguard-{row.values.get('id', row.number)}-{k}"
                if harmful and want_harmful:
                    out.append(HarmfulRequest(item_id, text, None, answer, image))
                elif not harmful and not want_harmful:
                    out.append(Example(item_id, text, answer, image))
            return out

        return _collect(_read_records(self.path, ["image", "safe", "instr-resp"]), build, self.on_bad_row)

    def harmful(self) -> list[HarmfulRequest]:
        return self._pairs(want_harmful=True)

    def normal(self) -> list[Example]:
        return self._pairs(want_harmful=False)
