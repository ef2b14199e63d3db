"""Sweep summary of unlearn jobs: before → after per attack set, layer and modality, next to collapse
signals, and the cost of each recipe relative to `textual` (the paper's cost comparison).

Written into the sweep folder as `unlearn_summary.csv` (one row per job × attack × layer × part) and
`unlearn_cost.csv` (one row per job), and printed as three tables (safety, utility, cost). The
before / after numbers are recomputed from each job's stored generations (`results.job_results`), so
they follow re-scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from vlmsafety.records import METRICS, read_metrics_file
from vlmsafety.report_tables import compact_table, fmt, layer_cell
from vlmsafety.unlearn.results import job_results

UNLEARN_CSV = "unlearn_summary.csv"
COST_CSV = "unlearn_cost.csv"
BASELINE = "textual"  # costs are reported as multiples of this recipe's


def is_unlearn_job(job: Path) -> bool:
    return read_metrics_file(job / METRICS).get("task") == "unlearn"


def result_rows(sweep_dir: Path, jobs: list[Path]) -> pd.DataFrame:
    """One row per (job, attack, layer, part) with before / after columns."""
    rows = []
    for job in jobs:
        m = read_metrics_file(job / METRICS)
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
        m = read_metrics_file(job / METRICS)
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


def results_tables(df: pd.DataFrame) -> list[Table]:
    """Before → after, sized for an 80-column terminal: a safety table (harmful prompts: ASR by the
    ground-truth judge if the run has one, else the first judge, beside its non-degenerate ASR and the
    degenerate rate) and a utility table (benign prompts: refusals, accuracy, degenerate answers, and the
    held-out NLL). Collapse flags go in the captions, one line each."""
    references = df["reference_judge"].dropna() if "reference_judge" in df else pd.Series(dtype=object)
    judge = str(references.iloc[0]) if not references.empty else next(
        (c[len("asr_"):-len("_after")] for c in df.columns if c.startswith("asr_") and c.endswith("_after")
         and not c.startswith("asr_non_degenerate")), None)
    refusal = "label_benign_refusal" if not references.empty and "label_benign_refusal_after" in df else f"benign_refusal_{judge}"
    layers = df["layer"].dropna().unique()
    scope = ""
    if len(layers) == 1:
        default = df["default_layer"].iloc[0] if "default_layer" in df else None
        scope = f" — layer {int(layers[0])}" + (" (trained default)" if default == layers[0] else "")
    harmful = df[pd.to_numeric(df.get("n_harmful_before"), errors="coerce").fillna(0) > 0] if "n_harmful_before" in df else df
    benign = df[pd.to_numeric(df.get("n_benign_before"), errors="coerce").fillna(0) > 0] if "n_benign_before" in df else df.iloc[0:0]
    tables = []
    safety = compact_table(f"Unlearning: safety before → after{scope}")
    keys = _keys(df, safety)
    for col in ("ASR", "ASR non-\ndegenerate", "degen-\nerate"):
        safety.add_column(col, justify="right", no_wrap=True)
    for _, r in harmful.iterrows():
        safety.add_row(*keys(r), _arrow(r, f"asr_{judge}"), _arrow(r, f"asr_non_degenerate_{judge}"),
                       _arrow(r, "degenerate_harmful"))
    safety.caption = (
        f"harmful prompts, judged by {judge}; text = without an image, image = with one; degenerate = "
        "empty / looping / broken answers" + _collapse_lines(harmful))
    tables.append(safety)
    if not benign.empty:
        utility = compact_table(f"Unlearning: utility before → after{scope}")
        keys = _keys(df, utility)
        for col in ("benign\nrefused", "accuracy", "degen-\nerate"):
            utility.add_column(col, justify="right", no_wrap=True)
        for _, r in benign.iterrows():
            utility.add_row(*keys(r), _arrow(r, refusal), _arrow(r, "accuracy"), _arrow(r, "degenerate_benign"))
        utility.caption = (
            "benign prompts" + (f", labelled by {judge}" if not references.empty else "")
            + "; a lower ASR only counts as safety when utility holds (collapse checks: "
            "vlmsafety/unlearn/results.py)" + _nll_lines(df) + _collapse_lines(benign))
        tables.append(utility)
    return tables


def _keys(df: pd.DataFrame, table: Table) -> Any:
    """Recipe, attack and part columns, and the layer column when the rows' layers differ."""
    show_layer = df["layer"].nunique(dropna=True) > 1
    for col in ("recipe", "attack", "part") + (("layer",) if show_layer else ()):
        table.add_column(col, justify="right" if col == "layer" else "left", no_wrap=True)

    def cells(r: pd.Series) -> list[str]:
        out = [str(r["unlearn"]), str(r["attack"]), str(r["part"])]
        if show_layer:
            out.append(layer_cell(r))
        return out

    return cells


def _nll_lines(df: pd.DataFrame) -> str:
    """One caption line per recipe: its NLL on its own held-out normal data (text or image) and on the forget set."""
    lines = []
    for recipe, rows in df.groupby("unlearn", sort=False):
        held = rows.dropna(subset=["heldout_nll_before"]) if "heldout_nll_before" in rows else rows.iloc[0:0]
        parts = [f"held-out NLL ({r['part']}) {_arrow(r, 'heldout_nll', '.3g')}" for _, r in held.drop_duplicates("part").iterrows()]
        if "forget_nll_before" in rows and rows["forget_nll_before"].notna().any():
            parts.append(f"forget NLL {_arrow(rows.iloc[0], 'forget_nll', '.3g')}")
        if parts:
            lines.append(f"\n{recipe}: " + ", ".join(parts))
    return "".join(lines)


def _collapse_lines(df: pd.DataFrame) -> str:
    flagged = df[df["collapse"].fillna("").astype(str) != ""] if "collapse" in df else df.iloc[0:0]
    return "".join(f"\n[bold red]COLLAPSE[/] {r['unlearn']} · {r['attack']} · {r['part']}: {r['collapse']}"
                   for _, r in flagged.iterrows())


def cost_table(df: pd.DataFrame) -> Table:
    models = df["model"].dropna().unique()
    title = f"Unlearning cost (× = multiple of the {BASELINE} job's)" + (f" — {models[0]}" if len(models) == 1 else "")
    table = compact_table(title)
    cols = ("recipe",) + (("model",) if len(models) > 1 else ()) + (
        "steps", "tokens", "images", "train\nFLOPs", "×", "train\ndevice-h", "×")
    for col in cols:
        table.add_column(col, justify="left" if col in ("recipe", "model") else "right", no_wrap=True)
    for _, r in df.iterrows():
        table.add_row(
            str(r["unlearn"]), *((str(r["model"]),) if len(models) > 1 else ()),
            _int(r["steps"]), _int(r["tokens"]), _int(r["images"]),
            f"{r['train_flops']:.3g}" if pd.notna(r["train_flops"]) else "—", _times(r[f"train_flops_vs_{BASELINE}"]),
            f"{r['train_device_hours']:.2g}" if pd.notna(r["train_device_hours"]) else "—",
            _times(r[f"train_device_hours_vs_{BASELINE}"]),
        )
    table.caption = "FLOPs: estimated from the tokens and images processed (vlmsafety/unlearn/cost.py); device hours: measured"
    return table


def _arrow(r: pd.Series, key: str, spec: str = ".2f") -> str:
    return f"{fmt(r.get(f'{key}_before'), spec)}→{fmt(r.get(f'{key}_after'), spec)}"


def _times(v: Any) -> str:
    return "—" if v is None or pd.isna(v) else f"×{v:.2f}"


def _int(v: Any) -> str:
    return "—" if v is None or pd.isna(v) else str(int(v))
