"""Sweep summary of unlearn jobs: before → after per attack set, layer and modality, next to collapse
signals, and the cost of each recipe relative to `textual` (the paper's cost comparison).

Written into the sweep folder as `unlearn_summary.csv` (one row per job × attack × layer × part) and
`unlearn_cost.csv` (one row per job), and printed as two tables. The before / after numbers are
recomputed from each job's stored generations (`results.job_results`), so they follow re-scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from vlmsafety.records import METRICS, read_json
from vlmsafety.unlearn.results import job_results

UNLEARN_CSV = "unlearn_summary.csv"
COST_CSV = "unlearn_cost.csv"
BASELINE = "textual"  # costs are reported as multiples of this recipe's


def is_unlearn_job(job: Path) -> bool:
    return read_json(job / METRICS).get("task") == "unlearn"


def result_rows(sweep_dir: Path, jobs: list[Path]) -> pd.DataFrame:
    """One row per (job, attack, layer, part) with before / after columns."""
    rows = []
    for job in jobs:
        m = read_json(job / METRICS)
        base = {"job": str(job.relative_to(sweep_dir)), "model": m.get("model"), "unlearn": m.get("unlearn"),
                "status": m.get("status")}
        nll = m.get("nll") or {}
        for res in job_results(job, nll):
            for part in ("text", "image"):
                b, a = res.get("before", {}).get(part), res.get("after", {}).get(part)
                if a is None and b is None:
                    continue
                row = {**base, "attack": res["attack"], "layer": res["layer"], "default_layer": res.get("default_layer"),
                       "part": part, "reference_judge": res.get("reference_judge"), "collapse": "; ".join(res["collapse"])}
                for phase, values in (("before", b), ("after", a)):
                    for key, value in _flat(values or {}).items():
                        row[f"{key}_{phase}"] = value
                for phase in ("before", "after"):
                    row[f"heldout_nll_{phase}"] = (nll.get(phase) or {}).get(f"heldout_nll_{part}")
                    row[f"forget_nll_{phase}"] = (nll.get(phase) or {}).get("forget_nll")
                rows.append(row)
    return pd.DataFrame(rows)


def cost_rows(sweep_dir: Path, jobs: list[Path]) -> pd.DataFrame:
    """One row per job: training steps, tokens, images, FLOPs and device hours, and × the textual job's."""
    rows = []
    for job in jobs:
        m = read_json(job / METRICS)
        cost, train = m.get("cost") or {}, m.get("train") or {}
        rows.append({
            "job": str(job.relative_to(sweep_dir)), "model": m.get("model"), "unlearn": m.get("unlearn"),
            "steps": train.get("steps"), "stopped": train.get("stopped"),
            "tokens": sum((cost.get("tokens") or {}).values()), "images": cost.get("images"),
            "vision_tokens": sum((cost.get("vision_tokens") or {}).values()),
            "train_flops": (cost.get("flops") or {}).get("total"),
            "train_device_hours": cost.get("train_device_hours"), "train_gpu_hours": cost.get("train_gpu_hours"),
            "job_device_hours": (m.get("device_hours") or {}).get("total"),
        })
    df = pd.DataFrame(rows)
    for col in ("train_flops", "train_device_hours"):
        df[f"{col}_vs_{BASELINE}"] = [_ratio(df, r, col) for _, r in df.iterrows()]
    return df


def _ratio(df: pd.DataFrame, row: pd.Series, col: str) -> float | None:
    base = df[(df["model"] == row["model"]) & (df["unlearn"] == BASELINE)]
    if base.empty or not base[col].iloc[0]:
        return None
    return float(row[col]) / float(base[col].iloc[0])


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update({f"{key}_{judge}": v for judge, v in value.items()})
        else:
            out[key] = value
    return out


def results_table(df: pd.DataFrame) -> Table:
    """Before → after per row: ASR by the ground-truth judge if the run has one (else the first judge)
    beside the collapse signals; with a ground-truth judge, benign refusal and the degenerate rates are
    its `refusal` and `degenerate` shares."""
    references = df["reference_judge"].dropna() if "reference_judge" in df else pd.Series(dtype=object)
    judge = str(references.iloc[0]) if not references.empty else next(
        (c[len("asr_"):-len("_after")] for c in df.columns if c.startswith("asr_") and c.endswith("_after")
         and not c.startswith("asr_non_degenerate")), None)
    refusal = "label_benign_refusal" if not references.empty and "label_benign_refusal_after" in df else f"benign_refusal_{judge}"
    table = Table(title=f"Unlearning: before → after (judge: {judge})", header_style="bold")
    for col in ("recipe", "attack", "layer", "part", "ASR", "ASR\nnon-degen.", "degenerate\n(harmful)",
                "benign\nrefusal", "utility\n(accuracy)", "degenerate\n(benign)", "held-out\nNLL", "collapse?"):
        table.add_column(col, justify="left" if col in ("recipe", "attack", "part", "collapse?") else "right")
    for _, r in df.iterrows():
        layer = str(int(r["layer"])) + ("*" if r.get("default_layer") == r["layer"] else "")
        table.add_row(
            str(r["unlearn"]), str(r["attack"]), layer, str(r["part"]),
            _arrow(r, f"asr_{judge}"), _arrow(r, f"asr_non_degenerate_{judge}"), _arrow(r, "degenerate_harmful"),
            _arrow(r, refusal), _arrow(r, "accuracy"), _arrow(r, "degenerate_benign"),
            _arrow(r, "heldout_nll"), "[bold red]COLLAPSE[/]: " + r["collapse"] if r["collapse"] else "no",
        )
    table.caption = (
        "text = prompts without an image, image = prompts with one; * = the model's trained default layer. "
        "A lower ASR only counts as safety when utility holds: 'collapse?' flags a drop in benign accuracy, "
        "a rise in degenerate responses or in held-out NLL (vlmsafety/unlearn/results.py)."
        + (f" Degenerate and benign refusal: {judge}'s labels." if not references.empty else "")
    )
    return table


def cost_table(df: pd.DataFrame) -> Table:
    table = Table(title=f"Unlearning cost (× = multiple of the {BASELINE} job's)", header_style="bold")
    for col in ("recipe", "model", "steps", "tokens", "images", "train FLOPs", "×", "train device-h", "×"):
        table.add_column(col, justify="left" if col in ("recipe", "model") else "right")
    for _, r in df.iterrows():
        table.add_row(
            str(r["unlearn"]), str(r["model"]), _int(r["steps"]), _int(r["tokens"]), _int(r["images"]),
            f"{r['train_flops']:.3g}" if pd.notna(r["train_flops"]) else "—", _times(r[f"train_flops_vs_{BASELINE}"]),
            f"{r['train_device_hours']:.2g}" if pd.notna(r["train_device_hours"]) else "—",
            _times(r[f"train_device_hours_vs_{BASELINE}"]),
        )
    table.caption = "FLOPs: estimate from tokens and images processed (vlmsafety/unlearn/cost.py); device hours: measured"
    return table


def _arrow(r: pd.Series, key: str) -> str:
    b, a = r.get(f"{key}_before"), r.get(f"{key}_after")
    fmt = lambda v: "—" if v is None or pd.isna(v) else f"{v:.2f}"  # noqa: E731
    return f"{fmt(b)}→{fmt(a)}"


def _times(v: Any) -> str:
    return "—" if v is None or pd.isna(v) else f"×{v:.2f}"


def _int(v: Any) -> str:
    return "—" if v is None or pd.isna(v) else str(int(v))
