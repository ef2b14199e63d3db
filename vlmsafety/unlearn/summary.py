"""Sweep summary of unlearn jobs: before → after per attack set, layer and modality, next to collapse
signals, and the cost of each recipe relative to `textual` (the paper's cost comparison).

Written into the sweep folder as `unlearn_summary.csv` (one row per job × attack × layer × part) and
`unlearn_cost.csv` (one row per job), and printed as three tables (safety, utility, cost). Jobs
evaluated at several vision layers (`unlearn.eval.layers`) add `unlearn_asr_by_layer.png` (ASR per
layer before and after, one panel per harmful attack set) and an across-layers table: each set's
worst layer's ASR and the default layer's ASR and utility, before → after; the safety and utility
tables then keep the default layer's rows once more than `MAX_LAYER_ROWS` layers were evaluated. The
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
LAYER_PNG = "unlearn_asr_by_layer.png"
BASELINE = "textual"  # costs are reported as multiples of this recipe's
MAX_LAYER_ROWS = 4  # more evaluated layers than this: the per-layer tables show the default layer only


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
    judge, refusal = _judge(df)
    full = df
    if df["layer"].nunique(dropna=True) > MAX_LAYER_ROWS and "default_layer" in df:
        df = df[df["layer"] == df["default_layer"]]  # every layer: the across-layers table and the CSV
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
            "benign prompts" + (f", labelled by {judge}" if refusal.startswith("label_") else "")
            + "; a lower ASR only counts as safety when utility holds (collapse checks: "
            "vlmsafety/unlearn/results.py)" + _nll_lines(df) + _collapse_lines(benign))
        tables.append(utility)
    across = layer_table(full)
    if across is not None:
        tables.append(across)
    return tables


def _judge(df: pd.DataFrame) -> tuple[str | None, str]:
    """(the judge whose ASR the tables show: the ground truth if any, else the first; the benign-refusal column)."""
    references = df["reference_judge"].dropna() if "reference_judge" in df else pd.Series(dtype=object)
    judge = str(references.iloc[0]) if not references.empty else next(
        (c[len("asr_"):-len("_after")] for c in df.columns if c.startswith("asr_") and c.endswith("_after")
         and not c.startswith(("asr_non_degenerate", "asr_heldout", "asr_seen"))), None)
    refusal = "label_benign_refusal" if not references.empty and "label_benign_refusal_after" in df else f"benign_refusal_{judge}"
    return judge, refusal


def layer_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per recipe × attack × part × item group: the worst layer's ASR (and which layer) before and after,
    the default layer's ASR, and for benign sets the default layer's accuracy and refusal. Groups: all
    items, or where items were held out of training, `trained` and `held-out` apart."""
    judge, refusal = _judge(df)
    rows = []
    for (recipe, attack, part), g in df.groupby(["unlearn", "attack", "part"], sort=False):
        default = g[g["layer"] == g["default_layer"]]
        d = default.iloc[0] if not default.empty else None
        base = {"unlearn": recipe, "attack": attack, "part": part, "n_layers": g["layer"].nunique()}
        if pd.to_numeric(g.get("n_harmful_before"), errors="coerce").fillna(0).max() > 0:
            split = f"asr_heldout_{judge}_after" in g and g[f"asr_heldout_{judge}_after"].notna().any()
            groups = (("trained", f"asr_seen_{judge}"), ("held-out", f"asr_heldout_{judge}")) if split else (("all", f"asr_{judge}"),)
            for items, key in groups:
                row = {**base, "items": items}
                for phase in ("before", "after"):
                    values = pd.to_numeric(g[f"{key}_{phase}"], errors="coerce") if f"{key}_{phase}" in g else pd.Series(dtype=float)
                    worst = values.idxmax() if values.notna().any() else None
                    row[f"worst_asr_{phase}"] = values[worst] if worst is not None else None
                    row[f"worst_layer_{phase}"] = g.loc[worst, "layer"] if worst is not None else None
                    row[f"default_asr_{phase}"] = d.get(f"{key}_{phase}") if d is not None else None
                rows.append(row)
        elif d is not None:
            rows.append({**base, "items": "benign", **{f"{k}_{phase}": d.get(f"{c}_{phase}") for k, c in
                         (("accuracy", "accuracy"), ("refusal", refusal)) for phase in ("before", "after")}})
    return pd.DataFrame(rows)


def layer_table(df: pd.DataFrame) -> Table | None:
    """The across-layers table (80 columns): worst-layer ASR, default-layer ASR, default-layer utility and refusal."""
    rows = layer_rows(df)
    if rows.empty or rows["n_layers"].max() < 2:
        return None
    judge, _ = _judge(df)
    prefix = _common_prefix(rows["attack"])
    several_parts = rows.groupby("attack")["part"].nunique()
    table = compact_table(f"Across {int(rows['n_layers'].max())} vision layers: before → after")
    for col in ("recipe", "set", "worst-layer\nASR (layer)", "default: ASR\nor refused", "default:\nutility"):
        table.add_column(col, justify="left" if col in ("recipe", "set") else "right", no_wrap=True)
    for _, r in rows.iterrows():
        label = str(r["attack"])[len(prefix):] + (f" {r['part']}" if several_parts[r["attack"]] > 1 else "")
        label += {"held-out": " held-out", "trained": " trained"}.get(str(r["items"]), "")
        if r["items"] == "benign":
            table.add_row(str(r["unlearn"]), label, "", _arrow(r, "refusal"), _arrow(r, "accuracy"))
            continue
        worst = f"{fmt(r['worst_asr_before'])} {_layer(r['worst_layer_before'])}→{fmt(r['worst_asr_after'])} {_layer(r['worst_layer_after'])}"
        table.add_row(str(r["unlearn"]), label, worst, _arrow(r, "default_asr"), "")
    table.caption = (f"judged by {judge}; harmful sets: ASR at the worst layer (L) and at the trained default layer; "
                     "benign sets: refusal rate (over-refusal) and accuracy at the default layer; held-out = "
                     "pairs kept out of training")
    return table


def _layer(v: Any) -> str:
    return "" if v is None or pd.isna(v) else f"L{int(v)}"


def _common_prefix(names: pd.Series) -> str:
    """The attack sets' shared `<name>_` prefix (e.g. `organism_`), left out of the table's set column."""
    parts = [str(n).split("_", 1) for n in names]
    first = {p[0] for p in parts}
    return f"{first.pop()}_" if len(first) == 1 and all(len(p) == 2 for p in parts) else ""


def layer_plot(df: pd.DataFrame) -> bytes | None:
    """PNG: ASR per vision layer, before (dashed) and after (solid) per recipe, one panel per harmful
    attack set and part; None when no job was evaluated at more than one layer."""
    judge, _ = _judge(df)
    col = f"asr_{judge}"
    harmful = df[pd.to_numeric(df.get("n_harmful_before"), errors="coerce").fillna(0) > 0] if "n_harmful_before" in df else df.iloc[0:0]
    if harmful.empty or harmful["layer"].nunique() < 2 or f"{col}_after" not in harmful:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(harmful.groupby(["attack", "part"], sort=True))
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), dpi=110, squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    recipes = list(dict.fromkeys(harmful["unlearn"]))
    for ax, ((attack, part), g) in zip(axes.flat, panels, strict=False):
        for k, recipe in enumerate(recipes):
            r = g[g["unlearn"] == recipe].sort_values("layer")
            if r.empty:
                continue
            color = colors[k % len(colors)]
            ax.plot(r["layer"], r[f"{col}_before"], ls="--", lw=1, color=color, alpha=0.6)
            ax.plot(r["layer"], r[f"{col}_after"], marker="o", ms=2.5, lw=1.4, color=color, label=f"{recipe} (after)")
        default = g["default_layer"].dropna()
        if not default.empty:
            ax.axvline(float(default.iloc[0]), color="grey", lw=0.8, ls=":")
        ax.set_title(f"{attack} · {part}", fontsize=9)
        ax.set_xlabel("vision layer")
        ax.set_ylim(-0.02, 1.02)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel(f"ASR ({judge})")
    axes[0][0].legend(fontsize=7, title="dashed: before; dotted: default layer", title_fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


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
