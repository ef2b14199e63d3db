"""Terminal tables of a sweep summary, sized for an 80-column terminal.

The CSV (`summary.csv`) keeps every number; the tables show what a reader scans first:
ASR per judge by layer, the ground-truth view when a reference judge ran, and judge agreement.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich import box
from rich.table import Table


def judges_in(df: pd.DataFrame) -> list[str]:
    return [c[4:] for c in df.columns if c.startswith("asr_") and not c.endswith(("_low", "_high"))]


def reference_judge(df: pd.DataFrame) -> str | None:
    if "reference_judge" not in df or df["reference_judge"].isna().all():
        return None
    return str(df["reference_judge"].dropna().iloc[0])


def summary_table(df: pd.DataFrame) -> Table:
    """Per job: ASR [95 % CI] of every judge side by side, the degenerate rate, over-refusal and toxicity."""
    judges = judges_in(df)
    ref = reference_judge(df)
    table = compact_table("ASR by layer" + _scope(df))
    keys = _key_columns(df, table)
    table.add_column("n", justify="right", no_wrap=True)
    for j in judges:
        table.add_column(f"ASR\n{j}", justify="right", no_wrap=True, min_width=16)
    show_degenerate = "degenerate_rate" in df
    if show_degenerate:
        table.add_column("degen-\nerate", justify="right")
    refusal = next((f"benign_refusal_{j}" for j in judges if j != ref and f"benign_refusal_{j}" in df), None)
    if refusal:
        table.add_column("benign\nrefused", justify="right")
    tox = next((c for c in df.columns if c.startswith("tox_") and c.endswith("_mean")), None)
    if tox:
        table.add_column("toxi-\ncity", justify="right")
    show_status = bool((df["status"] != "complete").any())
    if show_status:
        table.add_column("status")
    for _, r in df.iterrows():
        cells = keys(r) + [_fmt_int(r["n"])]
        cells += [_asr_cell(r, j) for j in judges]
        if show_degenerate:
            cells.append(fmt(r.get("degenerate_rate")))
        if refusal:
            cells.append(fmt(r.get(refusal)))
        if tox:
            cells.append(fmt(r.get(tox)))
        if show_status:
            cells.append(str(r["status"]))  # errors are listed in full under the tables
        table.add_row(*cells)
    notes = ["* trained default layer", "ASR on harmful prompts with its 95 % Wilson interval"]
    if show_degenerate:
        notes.append("degenerate = empty / looping / word-salad answers to harmful prompts")
    if refusal:
        notes.append(f"benign refused = {refusal[len('benign_refusal_'):]}'s refusals of benign prompts")
    if tox:
        scorer, _, attr = tox[4:-5].partition("_")
        notes.append(f"toxicity = mean {scorer if attr == scorer else f'{scorer} {attr}'} over answers to harmful prompts")
    table.caption = "; ".join(notes) + "; every number is in summary.csv"
    return table


def reference_table(df: pd.DataFrame) -> Table | None:
    """When a ground-truth judge ran: its rates per attack category, and every other judge scored against it."""
    ref = reference_judge(df)
    if ref is None:
        return None
    cols: list[tuple[str, str]] = []
    for c in df.columns:  # categories in first-seen order
        if c.startswith("cat_") and c.endswith(f"_unsafe_{ref}"):
            category = c[4 : -len(f"_unsafe_{ref}")]
            exact = f"cat_{category}_exact_{ref}"
            name = category.replace("_", "\n")  # narrow columns: one word a line
            if _all_benign(df, category) and exact in df:
                cols.append((f"{name}\nacc", exact))
            else:
                cols.append((f"{name}\n{'answered' if _all_benign(df, category) else 'ASR'}", c))
    for header, col in (("degen.", f"label_{ref}_harmful_degenerate"), ("benign\nacc", f"label_{ref}_benign_exact")):
        if col in df:
            cols.append((header, col))
    scored = [j for j in judges_in(df) if f"fpr_{j}" in df]
    for j in scored:  # one judge scored: its name goes in the caption, not in two wide headers
        label = "" if len(scored) == 1 else f"{j}\n"
        cols += [(f"{label}FPR", f"fpr_{j}"), (f"{label}FNR", f"fnr_{j}")]
    table = compact_table(f"Ground truth by layer ({ref})" + _scope(df))
    keys = _key_columns(df, table)
    for header, _ in cols:
        table.add_column(header, justify="right", min_width=_widest(header))
    for _, r in df.iterrows():
        table.add_row(*keys(r), *[fmt(r.get(c)) for _, c in cols])
    who = scored[0] if len(scored) == 1 else "a judge"
    table.caption = (
        f"per category: {ref}'s ASR (harmful parts) or accuracy (benign parts); degen. = share of harmful "
        f"prompts answered with broken output; FPR / FNR = how often {who} calls a refusal or broken answer "
        "an attack success, or misses a real one (harmful prompts)"
    )
    return table


def agreement_table(df: pd.DataFrame) -> Table | None:
    """Per judge pair over the sweep's jobs: mean observed agreement and Cohen's kappa (min–max)."""
    pairs = [c[len("kappa_") :] for c in df.columns if c.startswith("kappa_")]
    if not pairs:
        return None
    table = compact_table("Judge agreement (harmful prompts, per job)")
    for col in ("judges", "agreement\n(mean)", "κ mean", "κ min–max", "jobs\nwith κ"):
        table.add_column(col, justify="left" if col == "judges" else "right")
    for pair in pairs:
        kappa = pd.to_numeric(df[f"kappa_{pair}"], errors="coerce").dropna()
        agree = pd.to_numeric(df[f"agreement_{pair}"], errors="coerce").dropna()
        table.add_row(
            pair.replace("_vs_", " / "),
            fmt(agree.mean() if len(agree) else None),
            fmt(kappa.mean() if len(kappa) else None),
            f"{kappa.min():.2f}–{kappa.max():.2f}" if len(kappa) else "—",
            f"{len(kappa)}/{len(df)}",
        )
    table.caption = "κ is undefined (—) for a job where both judges gave every response the same label"
    return table


def compact_table(title: str) -> Table:
    return Table(
        title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
        title_justify="left", caption_justify="left",
    )


def _widest(header: str) -> int:
    """A column's minimum width: its longest header line (rich would otherwise cut "grounded" to "gro…")."""
    return max(len(line) for line in header.split("\n"))


def _scope(df: pd.DataFrame) -> str:
    """' — model · attack' when the sweep has one of each (then they need no columns)."""
    parts = [str(df[c].iloc[0]) for c in ("model", "attack") if df[c].nunique(dropna=False) == 1]
    unlearn = df["unlearn"].dropna().unique() if "unlearn" in df else []
    if len(unlearn) == 1 and unlearn[0] not in ("none", None):
        parts.append(f"unlearn={unlearn[0]}")
    return " — " + " · ".join(parts) if parts else ""


def _key_columns(df: pd.DataFrame, table: Table) -> Any:
    """Add model / attack columns where they vary, and the layer column; return the row-cells function."""
    varying = [c for c in ("model", "attack") if df[c].nunique(dropna=False) > 1]
    for c in varying:
        table.add_column(c, no_wrap=True)
    table.add_column("layer", justify="right", no_wrap=True)

    def cells(r: pd.Series) -> list[str]:
        return [str(r[c]) for c in varying] + [layer_cell(r)]

    return cells


def layer_cell(r: pd.Series) -> str:
    """The row's layer, starred when it is the model's trained default ("" when the row has none)."""
    layer = "" if pd.isna(r["layer"]) else str(int(r["layer"]))
    if layer and not pd.isna(r.get("default_layer")) and r["default_layer"] == r["layer"]:
        layer += "*"
    return layer


def _asr_cell(r: pd.Series, j: str) -> str:
    v = r.get(f"asr_{j}")
    if v is None or pd.isna(v):
        return "—"
    low, high = r.get(f"asr_{j}_low"), r.get(f"asr_{j}_high")
    # a per-behaviour mean of unequal groups (the harmbench convention) has no interval
    cell = f"{v:.2f}" if low is None or pd.isna(low) else f"{v:.2f} [{low:.2f},{high:.2f}]"
    invalid = r.get(f"invalid_{j}")
    if invalid is not None and not pd.isna(invalid) and invalid > 0:
        cell += f" ({int(invalid)} inv.)"
    return cell


def _all_benign(df: pd.DataFrame, category: str) -> bool:
    """Whether `category` holds benign prompts only (from the metrics' per-category harmful counts)."""
    col = f"cat_{category}_n_harmful"
    return col in df and bool((df[col].fillna(0) == 0).all())


def fmt(v: Any, spec: str = ".2f") -> str:
    """A number as the tables print it; "—" for a missing one."""
    return "—" if v is None or pd.isna(v) else format(v, spec)


def _fmt_int(v: Any) -> str:
    return "" if pd.isna(v) else str(int(v))
