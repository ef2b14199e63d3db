"""Record types that cross module boundaries, the one reader of job records, and atomic writes (DESIGN.md §5).

Every step that reads a job's files (score, report, resume, unlearn summaries) goes through
`read_records` / `read_metrics_file`: a torn line, binary garbage, a record without a field, a
duplicated record or an unreadable metrics.json is one `RecordError` naming the file and line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from vlmsafety.credentials import redact
from vlmsafety.errors import VlmSafetyError

GENERATIONS = "generations.jsonl"
METRICS = "metrics.json"
SUPERSEDED = "superseded"  # a job folder's sub-folder keeping the records of an earlier config (jobs.set_aside)


@dataclass
class GenerationRecord:
    """One row of `generations.jsonl`: one (prompt, image) pair answered at one layer."""

    id: str
    attack: str
    category: str
    harmful: bool
    behavior: str  # the request being tested (the attack item's behavior), before any chat template
    prompt: str  # the exact rendered text fed to the model
    image: dict[str, Any] | None  # {"spec": {...}, "sha256": "..."} or None for text-only
    layer: int
    response: str
    n_new_tokens: int
    target: str | None = None  # the attack item's reference answer, when the set has one
    context: str | None = None  # the attack item's context (HarmBench contextual behaviors), if any
    # degenerate-output heuristic on `response` (vlmsafety/judges/outcome.py): why it is degenerate, or None
    degenerate: bool = False
    degenerate_reason: str | None = None
    # per judge: {"unsafe": bool | None (None = invalid answer), "outcome": refusal|compliance|degenerate, ...}
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # per scorer: {attribute: score in [0, 1] or None (unscored)}, plus the flags in toxicity.base.FLAGS
    toxicity: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        # the fields as they are, not `asdict(self)`: asdict deep-copies every nested dict first, the
        # largest cost of writing a sweep's records; json.dumps walks them the same way, so the text is
        # the same (a nested dataclass, if one ever appears, is still written as asdict writes it)
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, ensure_ascii=False, default=_dataclass_as_dict)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> GenerationRecord:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


def _dataclass_as_dict(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that readers see either the old file or the whole new one."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; a result file gets what open() would give it (0666 minus the umask),
        # so that colleagues on a shared file system can read it
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but only result files depend on it)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write `obj` as JSON, secrets masked (credentials.redact: a key in a URL, a secret-named value)."""
    obj = json.loads(json.dumps(obj, ensure_ascii=False, default=_json_default))  # plain JSON types first
    write_text_atomic(path, json.dumps(redact(obj), indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[GenerationRecord | dict[str, Any]]) -> None:
    lines = [r.to_json() if isinstance(r, GenerationRecord) else json.dumps(r, ensure_ascii=False) for r in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class RecordError(VlmSafetyError):
    """A job's record file that cannot be trusted: names the file (and line) and what to do."""


# fields a stored record must have, with the JSON types they must hold (bool is not an int here)
_REQUIRED: dict[str, tuple[type, ...]] = {
    "id": (str,), "attack": (str,), "category": (str,), "harmful": (bool,), "behavior": (str,),
    "prompt": (str,), "layer": (int,), "response": (str,), "n_new_tokens": (int,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {"image": (dict, type(None)), "verdicts": (dict,), "toxicity": (dict,)}


def parse_record(line: bytes | str, where: str) -> GenerationRecord:
    """One `generations.jsonl` line as a record; `where` ("file line N") starts the error message."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        row = json.loads(text)
    except UnicodeDecodeError:
        raise RecordError(f"{where} is not UTF-8 text (binary garbage?)") from None
    except ValueError as e:
        raise RecordError(f"{where} is not a JSON record ({e.msg}): a torn or edited line; rerun the job or remove the line") from None
    if not isinstance(row, dict):
        raise RecordError(f"{where} is a JSON {type(row).__name__}, not a record object")
    for name, types in {**_REQUIRED, **_OPTIONAL}.items():
        if name not in row:
            if name in _REQUIRED:
                raise RecordError(f"{where}: the record has no {name!r} field")
            continue
        value = row[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise RecordError(f"{where}: field {name!r} is {type(value).__name__} {value!r:.40}, expected {types[0].__name__}")
    return GenerationRecord.from_dict(row)


def read_records(path: str | Path, allow_empty: bool = False) -> list[GenerationRecord]:
    """Every record of a job's generations.jsonl, checked: each line parses, has every field, and no
    (id, layer) appears twice. An empty file is an error unless `allow_empty`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RecordError(f"{path} cannot be read: {e.strerror or e}") from None
    records: list[GenerationRecord] = []
    seen: dict[tuple[str, int], int] = {}
    for k, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        rec = parse_record(line, f"{path} line {k}")
        first = seen.setdefault((rec.id, rec.layer), k)
        if first != k:
            raise RecordError(
                f"{path} line {k}: record id {rec.id!r} (layer {rec.layer}) appears twice (first on line {first}); "
                "each prompt must be judged once: remove the copy or rerun the job"
            )
        records.append(rec)
    if not records and not allow_empty:
        raise RecordError(f"{path} holds no record; rerun the job that wrote it")
    return records


read_generations = read_records  # the name older callers use


def read_metrics_file(path: str | Path) -> dict[str, Any]:
    """A job's metrics.json as a dict, or a RecordError naming it (missing, empty, torn, not an object)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path} cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if not text.strip():
        raise RecordError(f"{path} is empty (0 bytes); rerun the job, or remove its folder")
    try:
        m = json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}: truncated?); rerun the job") from None
    if not isinstance(m, dict):
        raise RecordError(f"{path} holds a JSON {type(m).__name__}, not a metrics object; rerun the job")
    return m


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
