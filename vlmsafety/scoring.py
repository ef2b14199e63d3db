"""Apply judges and toxicity scorers to records, and the metrics that follow from them.

Shared by `task=eval` (fresh generations) and `task=score` (stored ones), so both write the same
fields: per judge a verdict with its outcome, a record-level degenerate flag, per scorer scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vlmsafety.judges import Judge
from vlmsafety.judges.conventions import DEFAULT as DEFAULT_CONVENTION
from vlmsafety.judges.outcome import annotate
from vlmsafety.metrics import (
    category_rates,
    degenerate_metrics,
    judge_metrics,
    judge_vs_reference,
    label_rates,
    toxicity_metrics,
)
from vlmsafety.records import GenerationRecord
from vlmsafety.toxicity import ToxicityScorer
from vlmsafety.ui import DETAIL

log = logging.getLogger(__name__)


def covering(judges: Sequence[Judge], records: Sequence[GenerationRecord]) -> list[Judge]:
    """The judges that apply to `records`; each one left out is logged once (e.g. the organism's
    oracle, a default judge, on a public attack set it knows nothing about)."""
    kept = []
    for judge in judges:
        if judge.covers(records):
            kept.append(judge)
        else:
            log.info("judge %s does not apply to attack %s and is left out of this job", judge.name,
                     records[0].attack if records else "?", extra=DETAIL)
    return kept


def apply_judges(records: Sequence[GenerationRecord], judges: Sequence[Judge]) -> None:
    """Store each judge's verdict in `record.verdicts[judge.name]` (replacing an older one of that
    name), then the degenerate flag and every verdict's outcome. A verdict given under a non-default
    ASR convention names it, so metrics computed later from the records count it the same way."""
    for judge in judges:
        for rec, verdict in zip(records, judge.judge(records), strict=True):
            if judge.convention.name != DEFAULT_CONVENTION:
                verdict["convention"] = judge.convention.name
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
    records: Sequence[GenerationRecord],
    judge_names: Sequence[str],
    scorer_names: Sequence[str],
    judges: Sequence[Judge] = (),
) -> dict[str, Any]:
    """The judge-dependent part of `metrics.json`: ASR, refusal rates, agreement, degenerate, toxicity,
    and (from the `judges` that ran) label shares, per-category rates and scores against a reference judge."""
    return {
        **judge_metrics(records, judge_names),
        "degenerate": degenerate_metrics(records),
        "toxicity": toxicity_metrics(records, scorer_names),
        **reference_metrics(records, judge_names, judges),
    }


def reference_metrics(
    records: Sequence[GenerationRecord], judge_names: Sequence[str], judges: Sequence[Judge]
) -> dict[str, Any]:
    """Label shares of labelling judges, rates per category, and every judge scored against a reference judge."""
    labels = {j.name: j.labels for j in judges if j.labels}
    out: dict[str, Any] = {"by_category": category_rates(records, list(judge_names), labels)}
    if labels:
        out["labels"] = {name: label_rates(records, name, labs) for name, labs in labels.items()}
    reference = next((j.name for j in judges if j.reference), None)
    if reference:
        out["reference_judge"] = reference
        out["vs_reference"] = {
            name: judge_vs_reference(records, name, reference) for name in judge_names if name != reference
        }
    return out
