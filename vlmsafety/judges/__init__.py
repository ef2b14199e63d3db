"""Judges (one module each, registered by type name)."""

from vlmsafety.judges import harmbench_cls, keyword, llamaguard, organism_oracle  # noqa: F401
from vlmsafety.judges.base import Judge, build_judge, register_judge

__all__ = ["Judge", "build_judge", "register_judge"]
