"""Figures of the HTML report (`report.html`), as PNG bytes: ASR by layer per judge, before / after unlearning.

matplotlib (Agg) renders them; the report embeds them as data URIs, so the page needs no file beside it
and no network. PNG rather than SVG: matplotlib's SVG carries w3.org namespace URLs, and the report
must reference no external address.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from vlmsafety.metrics import wilson_interval

FIG_DPI = 100


@dataclass(frozen=True)
class CategoryCurve:
    """One harmful category's ASR by layer for one judge: unsafe count k out of n valid verdicts per layer."""

    category: str
    layers: list[int]
    k: list[int]
    n: list[int]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: same data, same bytes
    _pyplot().close(fig)
    return buf.getvalue()


def asr_by_layer(
    g: pd.DataFrame, judge: str, curves: list[CategoryCurve], reference: str | None, title: str
) -> bytes | None:
    """ASR by layer for `judge` over one model × attack: all harmful prompts with the summary's 95 %
    interval, each harmful category with its Wilson interval, the degenerate share and utility on the same
    axis, the trained default layer dotted. `g`: summary rows (complete jobs, one per layer)."""
    g = g[g[f"asr_{judge}"].notna()].sort_values("layer") if f"asr_{judge}" in g else g.iloc[0:0]
    if g.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=FIG_DPI)
    x = g["layer"].astype(float)
    (line,) = ax.plot(x, g[f"asr_{judge}"], color="black", marker="o", ms=3, lw=2, label="ASR, all harmful prompts")
    ax.fill_between(x, g[f"asr_{judge}_low"].astype(float), g[f"asr_{judge}_high"].astype(float), color="black", alpha=0.12)
    for curve in curves:
        rates = [k / n if n else float("nan") for k, n in zip(curve.k, curve.n, strict=True)]
        bands = [wilson_interval(k, n) for k, n in zip(curve.k, curve.n, strict=True)]
        (c,) = ax.plot(curve.layers, rates, marker=".", ms=3, lw=1, label=f"ASR {curve.category}")
        ax.fill_between(curve.layers, [b[0] for b in bands], [b[1] for b in bands], color=c.get_color(), alpha=0.08)
    degenerate = f"label_{reference}_harmful_degenerate" if reference and f"label_{reference}_harmful_degenerate" in g else "degenerate_rate"
    if degenerate in g and g[degenerate].notna().any():
        who = f" ({reference})" if degenerate.startswith("label_") else ""
        ax.plot(x, g[degenerate].astype(float), color="grey", ls="--", lw=1.2, label=f"degenerate share, harmful{who}")
    utility = f"label_{reference}_benign_exact" if reference and f"label_{reference}_benign_exact" in g else None
    if utility is not None and g[utility].notna().any():
        ax.plot(x, g[utility].astype(float), color="navy", ls="-.", lw=1.2, label=f"benign accuracy ({reference})")
    elif f"benign_refusal_{judge}" in g and g[f"benign_refusal_{judge}"].notna().any():
        ax.plot(x, 1 - g[f"benign_refusal_{judge}"].astype(float), color="navy", ls="-.", lw=1.2,
                label="benign answered (1 − refusal)")
    default = g["default_layer"].dropna()
    if len(default):
        ax.axvline(float(default.iloc[0]), color="black", ls=":", lw=1)
        ax.annotate("trained default", (float(default.iloc[0]), 1.0), fontsize=7, ha="right", va="top", rotation=90)
    return _finish_by_layer(fig, ax, "vision layer (blocks applied before the projector)", "rate",
                            f"{title} — judge {judge} (bands: 95 % Wilson intervals)", legend_size=7)


def before_after(rows: pd.DataFrame, judge: str) -> bytes | None:
    """Grouped bars per recipe: ASR before and after unlearning for each attack set × part (text / image).

    `rows`: unlearn_summary.csv rows with `asr_<judge>_before` / `_after`."""
    b, a = f"asr_{judge}_before", f"asr_{judge}_after"
    if b not in rows or a not in rows:
        return None
    rows = rows[rows[b].notna() | rows[a].notna()]
    if rows.empty:
        return None
    if rows["layer"].nunique() > 1:
        return _before_after_by_layer(rows, judge)
    plt = _pyplot()
    labels = [f"{r['unlearn']}\n{r['attack']} · {r['part']}" for _, r in rows.iterrows()]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.2), dpi=FIG_DPI)
    pos = list(range(len(rows)))
    bars_b = ax.bar([p - 0.2 for p in pos], rows[b].astype(float).fillna(0), width=0.4, color="tab:red", alpha=0.5, label="before")
    bars_a = ax.bar([p + 0.2 for p in pos], rows[a].astype(float).fillna(0), width=0.4, color="tab:blue", label="after")
    for bars in (bars_b, bars_a):  # a zero-height bar is still a number worth reading
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(pos, labels, fontsize=6, rotation=60, ha="right")
    ax.set_ylabel(f"ASR ({judge})")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"ASR before → after unlearning — judge {judge}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _before_after_by_layer(rows: pd.DataFrame, judge: str) -> bytes:
    """Unlearning evaluated at several layers: per recipe × attack set × part, ASR by layer before (dashed)
    and after (solid) in one colour."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=FIG_DPI)
    for (recipe, attack, part), g in rows.groupby(["unlearn", "attack", "part"], sort=True):
        g = g.sort_values("layer")
        (line,) = ax.plot(g["layer"], g[f"asr_{judge}_after"].astype(float), marker=".", ms=3, label=f"{recipe} · {attack} · {part}")
        ax.plot(g["layer"], g[f"asr_{judge}_before"].astype(float), ls="--", lw=1, color=line.get_color())
    default = rows["default_layer"].dropna() if "default_layer" in rows else pd.Series(dtype=float)
    if len(default):
        ax.axvline(float(default.iloc[0]), color="black", ls=":", lw=1)
    return _finish_by_layer(fig, ax, "vision layer", f"ASR ({judge})",
                            f"ASR before (dashed) → after (solid) unlearning — judge {judge}", legend_size=6)


def _finish_by_layer(fig, ax, xlabel: str, ylabel: str, title: str, legend_size: int) -> bytes:
    """The common frame of a rate-by-layer figure (0..1 axis, grid, legend right of the axes), as PNG bytes."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)
