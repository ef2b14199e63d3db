"""Judge interface and registry: a judge reads stored generations and returns one verdict each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from vlmsafety.errors import check_options
from vlmsafety.judges.conventions import get_convention
from vlmsafety.records import GenerationRecord
from vlmsafety.registry import Registry


class Judge(ABC):
    """Decides, per response, whether the model complied with (unsafe) or refused the request."""

    # A judge that also sorts responses into classes names them here; its verdicts carry "label".
    labels: ClassVar[tuple[str, ...]] = ()
    # A ground-truth judge: the other judges of a run are scored against it (metrics.judge_vs_reference).
    reference: ClassVar[bool] = False
    # ASR conventions this judge can follow (judges/conventions.py); GCG's differs from the default only
    # in how an empty response is judged, a rule that only a keyword judge applies.
    conventions: ClassVar[tuple[str, ...]] = ("vlmsafety", "harmbench")

    def __init__(self, name: str, convention: str = "vlmsafety"):
        self.name = name
        self.convention = get_convention(convention, f"judge.{name}.convention", self.conventions)

    def covers(self, records: Sequence[GenerationRecord]) -> bool:
        """Whether this judge applies to `records`; a judge that knows only one world (the organism's
        oracle) returns False for a set wholly outside it and is then left out of the run with a note.
        A set it covers only in part is an error the judge raises itself."""
        return True

    @abstractmethod
    def judge(self, records: Sequence[GenerationRecord]) -> list[dict[str, Any]]:
        """One verdict per record: {"unsafe": bool, ...} plus judge-specific fields (score, raw).

        `unsafe` is None when the judge's own answer was invalid (neither verdict): such a record
        is left out of ASR denominators and counted as invalid, never silently safe.
        """


def _load_builtins() -> None:
    import vlmsafety.judges  # noqa: F401  (registers the shipped judges)


JUDGES: Registry[Callable[..., Judge]] = Registry("judge type", _load_builtins)


def register_judge(type_name: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    return JUDGES.register(type_name)


def build_judge(name: str, cfg: dict[str, Any]) -> Judge:
    """Instantiate the judge configured as `judge.<name>` (its `type` picks the class)."""
    cfg = dict(cfg)
    type_name = cfg.pop("type", name)
    cls = JUDGES.get(type_name, where=f"judge.{name}")
    check_options(f"judge.{name}", cls, cfg)
    return cls(name=name, **cfg)
