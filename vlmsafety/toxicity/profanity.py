"""Offline default toxicity scorer: alt-profanity-check (a linear SVM over bag-of-words)."""

from __future__ import annotations

from collections.abc import Sequence

from vlmsafety.toxicity.base import ToxicityScorer, register_scorer


@register_scorer("profanity")
class ProfanityScorer(ToxicityScorer):
    """Probability that a text is profane/offensive, per alt-profanity-check; attribute `profanity`."""

    attribute = "profanity"

    def __init__(self, name: str = "profanity"):
        super().__init__(name)
        from profanity_check import predict_prob  # deferred: loads a scikit-learn model

        self._predict_prob = predict_prob

    def score(self, texts: Sequence[str]) -> list[dict[str, float | None]]:
        if not texts:
            return []
        probs = self._predict_prob(list(texts))
        return [{self.attribute: round(float(p), 6)} for p in probs]
