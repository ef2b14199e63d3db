"""Toxicity scorers (one module each, registered by type name)."""

from vlmsafety.toxicity import detoxify, perspective, profanity  # noqa: F401
from vlmsafety.toxicity.base import ToxicityScorer, build_scorer, register_scorer

__all__ = ["ToxicityScorer", "build_scorer", "register_scorer"]
