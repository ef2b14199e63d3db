"""Record types that cross module boundaries, and atomic file writes (DESIGN.md §5)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GENERATIONS = "generations.jsonl"
METRICS = "metrics.json"


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
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    toxicity: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> GenerationRecord:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that readers see either the old file or the whole new one."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[GenerationRecord | dict[str, Any]]) -> None:
    lines = [r.to_json() if isinstance(r, GenerationRecord) else json.dumps(r, ensure_ascii=False) for r in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_generations(path: str | Path) -> list[GenerationRecord]:
    with open(path, encoding="utf-8") as f:
        return [GenerationRecord.from_dict(json.loads(line)) for line in f if line.strip()]


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
