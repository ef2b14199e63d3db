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
        self._scores: dict[str, float] = {}  # per text: a sweep's layers repeat most answers (text-only rows)

    def score(self, texts: Sequence[str]) -> list[dict[str, float | None]]:
        # each text is scored on its own row of the model's input, so a remembered score is the one a new
        # batch would give
        new = [t for t in dict.fromkeys(texts) if t not in self._scores]
        if new:
            if len(self._scores) + len(new) > _MAX_REMEMBERED:
                self._scores.clear()
            self._scores.update(zip(new, (round(float(p), 6) for p in self._predict_prob(new)), strict=True))
        return [{self.attribute: self._scores[t]} for t in texts]


_MAX_REMEMBERED = 200_000
