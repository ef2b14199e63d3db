"""Paper 1's aggregate of a layer sweep: mean ASR (and toxicity) over its early / middle / late layers.

A `+experiment=paper1_*` preset sets `paper.layer_groups`; every job of the sweep records it in its
metrics.json config, and the sweep summary prints one table of group means per model × attack
(× unlearn). Groups are either listed explicitly ({early: [1, 2, ...], ...}, in the project's layer
numbering: blocks applied before the projector) or `thirds`: the encoder's N blocks cut into three
contiguous runs, early = 1..round(N/3), middle = ..round(2N/3), late = ..N (layer 0, the
embeddings, belongs to none). Which layers the paper averages is an assumption the preset states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import METRICS, RecordError, read_metrics_file

GROUPS = ("early", "middle", "late")


def layer_groups(spec: Any, num_layers: int) -> dict[str, list[int]]:
    """The layers of each group: `spec` is "thirds" or a mapping of group name to layers."""
    if spec == "thirds":
        cuts = [0, round(num_layers / 3), round(2 * num_layers / 3), num_layers]
        return {g: list(range(cuts[i] + 1, cuts[i + 1] + 1)) for i, g in enumerate(GROUPS)}
    if isinstance(spec, Mapping) and spec:
        return {str(g): [int(v) for v in layers] for g, layers in spec.items()}
    raise VlmSafetyError(f"paper.layer_groups={spec!r}; use thirds or a mapping such as {{early: [1, 2], late: [23, 24]}}")


def group_means(values: Mapping[int, float], groups: Mapping[str, Sequence[int]]) -> dict[str, tuple[float | None, int, int]]:
    """Per group: (mean of the values at its layers that were measured, layers measured, layers in the group)."""
    out = {}
    for name, layers in groups.items():
        got = [values[layer] for layer in layers if layer in values and values[layer] is not None and not pd.isna(values[layer])]
        out[name] = (sum(got) / len(got) if got else None, len(got), len(layers))
    return out


def paper_spec(sweep_dir: Path, jobs: Sequence[str]) -> dict[str, Any] | None:
    """The `paper` block the sweep's jobs ran with (from the first job's metrics.json), or None."""
    for job in jobs:
        metrics = _metrics(Path(sweep_dir) / job)
        paper = (metrics.get("config") or {}).get("paper")
        if paper and paper.get("layer_groups"):
            return paper
    return None


def aggregate_rows(df: pd.DataFrame, paper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per model × attack × unlearn × quantity (each judge's ASR, each toxicity mean): group means."""
    ok = df[(df["status"] == "complete") & df["layer"].notna()]
    quantities = [c for c in ok.columns if c.startswith("asr_") and not c.endswith(("_low", "_high"))]
    quantities += [c for c in ok.columns if c.startswith("tox_") and c.endswith("_mean")]
    rows = []
    for (model, attack, unlearn), g in ok.groupby(["model", "attack", "unlearn"], sort=True, dropna=False):
        num_layers = int(g["num_layers"].dropna().iloc[0]) if "num_layers" in g and g["num_layers"].notna().any() else None
        if paper["layer_groups"] == "thirds" and num_layers is None:
            continue
        groups = layer_groups(paper["layer_groups"], num_layers or 0)
        for q in quantities:
            values = dict(zip(g["layer"].astype(int), g[q], strict=True))
            if all(pd.isna(v) for v in values.values()):
                continue
            means = group_means(values, groups)
            rows.append({"model": model, "attack": attack, "unlearn": unlearn, "quantity": q, "groups": groups, **means})
    return rows


def aggregate_table(sweep_dir: Path, df: pd.DataFrame) -> Table | None:
    """The paper's early / middle / late means of the sweep, when its jobs ran with a paper preset."""
    paper = paper_spec(sweep_dir, list(df.loc[df["status"] == "complete", "job"])) if not df.empty else None
    if paper is None:
        return None
    df = df.assign(num_layers=[_num_layers(Path(sweep_dir) / job) for job in df["job"]])
    rows = aggregate_rows(df, paper)
    if not rows:
        return None
    names = list(rows[0]["groups"])
    table = Table(title=f"{paper.get('name', 'paper')}: mean over layer groups", title_justify="left")
    for col in ("model · attack", "quantity", *names):
        table.add_column(col, justify="left" if col in ("model · attack", "quantity") else "right")
    for r in rows:
        cells = []
        for name in names:
            mean, got, total = r[name]
            cells.append("—" if mean is None else f"{mean:.3f}" + ("" if got == total else f" ({got}/{total})"))
        label = f"{r['model']} · {r['attack']}" + ("" if r["unlearn"] in (None, "none") else f" · {r['unlearn']}")
        table.add_row(label, r["quantity"], *cells)
    spans = ", ".join(f"{n} {min(v)}–{max(v)}" for n, v in rows[0]["groups"].items() if v)
    table.caption = f"layers: {spans} ({paper['layer_groups'] if isinstance(paper['layer_groups'], str) else 'as listed'})"
    return table


def _num_layers(job: Path) -> int | None:
    return _metrics(job).get("num_layers")


def _metrics(job: Path) -> dict[str, Any]:
    """The job's metrics.json, or {} when it is missing or unreadable (the summary names such a job)."""
    try:
        return read_metrics_file(job / METRICS)
    except RecordError:
        return {}
