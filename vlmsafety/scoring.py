"""Apply judges and toxicity scorers to records, and the metrics that follow from them.

Shared by `task=eval` (fresh generations) and `task=score` (stored ones), so both write the same
fields: per judge a verdict with its outcome, a record-level degenerate flag, per scorer scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmsafety.judges import Judge
from vlmsafety.judges.outcome import annotate
from vlmsafety.metrics import degenerate_metrics, judge_metrics, toxicity_metrics
from vlmsafety.records import GenerationRecord
from vlmsafety.toxicity import ToxicityScorer


def apply_judges(records: Sequence[GenerationRecord], judges: Sequence[Judge]) -> None:
    """Store each judge's verdict in `record.verdicts[judge.name]` (replacing an older one of that
    name), then the degenerate flag and every verdict's outcome."""
    for judge in judges:
        for rec, verdict in zip(records, judge.judge(records), strict=True):
            rec.verdicts[judge.name] = verdict
    for rec in records:
        annotate(rec)


def apply_scorers(records: Sequence[GenerationRecord], scorers: Sequence[ToxicityScorer]) -> None:
    """Store each scorer's scores of the responses in `record.toxicity[scorer.name]`."""
    for scorer in scorers:
        for rec, scores in zip(records, scorer.score([r.response for r in records]), strict=True):
            rec.toxicity[scorer.name] = scores


def judged_names(records: Sequence[GenerationRecord]) -> tuple[list[str], list[str]]:
    """Judges and scorers present in every record, in first-seen order."""
    judges = [j for j in dict.fromkeys(j for r in records for j in r.verdicts) if all(j in r.verdicts for r in records)]
    scorers = [s for s in dict.fromkeys(s for r in records for s in r.toxicity) if all(s in r.toxicity for r in records)]
    return judges, scorers


def judging_metrics(
    records: Sequence[GenerationRecord], judge_names: Sequence[str], scorer_names: Sequence[str]
) -> dict[str, Any]:
    """The judge-dependent part of `metrics.json`: ASR, refusal rates, agreement, degenerate, toxicity."""
    return {
        **judge_metrics(records, judge_names),
        "degenerate": degenerate_metrics(records),
        "toxicity": toxicity_metrics(records, scorer_names),
    }
