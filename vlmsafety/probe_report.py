"""task=probe's outputs: per-layer tables (`probe.csv`, `probe_layers.csv`), `probe.json`, `probe.png`, the terminal table.

The numbers come from `vlmsafety/refusal_direction.py`; `vlmsafety/tasks/probe.py` runs the model.
A sweep of generations (`probe.compare_sweep`) adds its per-layer ASR and the rank correlations.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.table import Table

from vlmsafety import refusal_direction as rd
from vlmsafety.attacks import AttackItem
from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import write_bytes_atomic, write_json_atomic, write_text_atomic
from vlmsafety.report_tables import compact_table, fmt, judges_in, layer_cell, reference_judge
from vlmsafety.ui import console

log = logging.getLogger(__name__)

PROBE_CSV, PROBE_LONG_CSV, PROBE_JSON, PROBE_PNG = "probe.csv", "probe_layers.csv", "probe.json", "probe.png"


@dataclass
class Groups:
    """Row masks over the evaluation prompts: the headline harmful group, the benign one, each harmful category."""

    headline: np.ndarray  # [n] bool: harmful prompts outside `apart`
    benign: np.ndarray  # [n] bool
    categories: dict[str, np.ndarray]  # harmful category -> [n] bool, in first-seen order
    apart: list[str]  # harmful categories present and kept out of the headline group

    @classmethod
    def of(cls, items: Sequence[AttackItem], apart: Sequence[str]) -> Groups:
        harmful = np.array([it.harmful for it in items], bool)
        category = np.array([it.category for it in items], object)
        names = list(dict.fromkeys(it.category for it in items if it.harmful))
        kept_apart = [c for c in names if c in set(apart)]
        headline = harmful & ~np.isin(category, kept_apart)
        if not headline.any() and harmful.any():
            log.warning("probe.apart=%s leaves no harmful prompt in the headline group: it keeps them all", list(apart))
            headline, kept_apart = harmful, []
        return cls(headline, ~harmful, {c: category == c for c in names}, kept_apart)

    def describe(self, items: Sequence[AttackItem]) -> dict[str, list[str]]:
        def cats(mask: np.ndarray) -> list[str]:
            return list(dict.fromkeys(it.category for it, m in zip(items, mask, strict=True) if m))

        return {"headline_harmful": cats(self.headline), "benign": cats(self.benign), "apart": self.apart}


@dataclass
class LayerResult:
    """What one vision layer leaves after its forward passes (its residual streams are not kept)."""

    layer: int
    projections: np.ndarray  # [n, L+1]: each evaluation prompt's projection onto the unit refusal direction
    refusal: np.ndarray  # [n]: probability that the first answer token opens a refusal
    probe_accuracy: list[float | None]  # [L+1]: cross-validated linear-probe accuracy, headline harmful vs benign


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def frames(
    results: Sequence[LayerResult], groups: Groups, scale: tuple[np.ndarray, np.ndarray], lm_layer: int, default_layer: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per vision layer at `lm_layer`, one row per vision layer × LM layer).

    proj_* = mean projection on the calibration scale (0 = benign, 1 = harmful calibration mean);
    raw_* = mean projection onto the unit direction; auroc = harmful vs benign by raw projection.
    """
    long_rows, wide_rows = [], []
    for r in results:
        for k in range(r.projections.shape[1]):
            raw = r.projections[:, k]
            scaled = rd.rescale(raw, scale[0][k], scale[1][k])
            row: dict[str, Any] = {
                "vision_layer": r.layer, "lm_layer": k,
                "proj_harmful": _mean(scaled[groups.headline]), "proj_benign": _mean(scaled[groups.benign]),
                "raw_harmful": _mean(raw[groups.headline]), "raw_benign": _mean(raw[groups.benign]),
                "auroc": rd.auroc(raw[groups.headline], raw[groups.benign]), "probe_acc": r.probe_accuracy[k],
            }
            for c, mask in groups.categories.items():
                row[f"cat_{c}_proj"] = _mean(scaled[mask])
                row[f"cat_{c}_auroc"] = rd.auroc(raw[mask], raw[groups.benign])
            long_rows.append(row)
            if k == lm_layer:
                wide = {"layer": r.layer, "default_layer": default_layer, "lm_layer": k,
                        "n_harmful": int(groups.headline.sum()), "n_benign": int(groups.benign.sum())}
                wide.update((key, v) for key, v in row.items() if key not in ("vision_layer", "lm_layer"))
                wide["refusal_harmful"] = _mean(r.refusal[groups.headline])
                wide["refusal_benign"] = _mean(r.refusal[groups.benign])
                for c, mask in groups.categories.items():
                    wide[f"cat_{c}_refusal"] = _mean(r.refusal[mask])
                wide_rows.append(wide)
    return pd.DataFrame(wide_rows), pd.DataFrame(long_rows)


def sweep_asr(sweep_dir: str | Path, model: str, attack: str, groups: Groups) -> tuple[pd.DataFrame, str]:
    """Per layer of a task=eval sweep on `model` and `attack`: its ASR, per-category ASR and the ASR over the
    headline categories (`asr_probed`), by the reference judge (the oracle) if present, else the first judge."""
    from vlmsafety.report import collect

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise VlmSafetyError(f"probe.compare_sweep={sweep_dir} is not a folder; pass a task=eval sweep's folder")
    df = collect(sweep_dir)
    found = sorted({f"{m} on {a}" for m, a in zip(df.get("model", []), df.get("attack", []), strict=False)})
    if not df.empty:
        df = df[(df["status"] == "complete") & (df["task"] == "eval") & (df["model"] == model) & (df["attack"] == attack)]
        df = df[df["unlearn"].isin(["none", None]) | df["unlearn"].isna()]
    if df.empty:
        raise VlmSafetyError(f"probe.compare_sweep={sweep_dir} has no complete task=eval job of {model} on {attack} "
                             f"(it holds: {', '.join(found) or 'no job'}); sweep that model and attack first")
    judge = reference_judge(df) or judges_in(df)[0]
    df = df.sort_values("layer").drop_duplicates("layer")
    out = pd.DataFrame({"layer": df["layer"].astype(int).to_numpy(), "asr": df[f"asr_{judge}"].to_numpy(dtype=float)})
    weights, weighted = 0.0, np.zeros(len(df))
    headline = [c for c in groups.categories if c not in groups.apart]
    for c in groups.categories:
        col = f"cat_{c}_unsafe_{judge}"
        if col in df:
            out[f"cat_{c}_asr"] = df[col].to_numpy(dtype=float)
            if c in headline:
                n = df[f"cat_{c}_n_harmful"].to_numpy(dtype=float)
                weighted, weights = weighted + n * out[f"cat_{c}_asr"].to_numpy(), weights + n
    if headline and all(f"cat_{c}_asr" in out for c in headline):
        out["asr_probed"] = weighted / weights
    return out, judge


def rank_correlations(wide: pd.DataFrame, groups: Groups) -> dict[str, float | None]:
    """Spearman's ρ across vision layers between the probe's scores and the sweep's ASR."""
    def rho(a: str, b: str) -> float | None:
        if a not in wide or b not in wide:
            return None
        both = wide[[a, b]].dropna()
        return rd.spearman(both[a], both[b])

    asr = "asr_probed" if "asr_probed" in wide else "asr"
    out = {f"refusal_harmful~{asr}": rho("refusal_harmful", asr), f"proj_harmful~{asr}": rho("proj_harmful", asr)}
    if asr != "asr":
        out["refusal_harmful~asr"] = rho("refusal_harmful", "asr")
    for c in groups.categories:
        out[f"cat_{c}_proj~cat_{c}_asr"] = rho(f"cat_{c}_proj", f"cat_{c}_asr")
    return out


def probe_table(wide: pd.DataFrame, groups: Groups, facts: dict[str, Any]) -> Table:
    """Per vision layer at the headline LM layer, sized for an 80-column terminal."""
    table = compact_table(f"Refusal direction by vision layer — {facts['model']} · {facts['attack']}")
    cols: list[tuple[str, str]] = [("proj.\nharmful", "proj_harmful"), ("proj.\nbenign", "proj_benign")]
    cols += [(f"proj.\n{c}", f"cat_{c}_proj") for c in groups.apart]
    cols += [("AUROC", "auroc")] + [(f"AUROC\n{c}", f"cat_{c}_auroc") for c in groups.apart]
    cols += [("probe\nacc.", "probe_acc"), ("refusal\nharmful", "refusal_harmful"), ("refusal\nbenign", "refusal_benign")]
    asr = "asr_probed" if "asr_probed" in wide else "asr" if "asr" in wide else None
    if asr:
        cols.append(("ASR", asr))
    table.add_column("layer", justify="right", no_wrap=True)
    for header, _ in cols:
        table.add_column(header, justify="right", min_width=max(len(line) for line in header.split("\n")))
    for _, r in wide.iterrows():
        table.add_row(layer_cell(r), *[fmt(r.get(c)) for _, c in cols])
    groups_line = facts["groups"]
    notes = [
        "* trained default layer",
        f"LM layer {facts['lm_layer']} ({'best calibration separation' if facts['lm_layer_chosen'] else 'probe.lm_layer'})",
        f"direction from {facts['calibration']}",
        "proj. = mean projection on the refusal direction (0 = benign, 1 = harmful calibration mean)",
        f"harmful = {'+'.join(groups_line['headline_harmful'])}, benign = {'+'.join(groups_line['benign'])}",
        "AUROC of the projection vs benign; probe = cross-validated linear probe, harmful vs benign",
        "refusal = P(first answer token opens a refusal); every number (per category too) is in probe.csv",
    ]
    if asr:
        rho = facts["rank_correlation"]
        notes.append(
            f"ASR = {facts['compare']['judge']}'s on the {'harmful parts probed' if asr == 'asr_probed' else 'harmful prompts'}; "
            f"Spearman ρ across layers: refusal vs ASR {fmt(rho['refusal_harmful~' + asr])}, "
            f"proj. vs ASR {fmt(rho['proj_harmful~' + asr])}"
        )
        if asr == "asr_probed":
            notes.append(f"refusal vs the ASR of all harmful prompts: ρ {fmt(rho['refusal_harmful~asr'])}")
    table.caption = "; ".join(notes)
    return table


def plot_probe(wide: pd.DataFrame, long: pd.DataFrame, groups: Groups, facts: dict[str, Any]) -> bytes:
    """PNG bytes: projection and refusal score vs vision layer (default layer dotted), AUROC heatmap vision × LM layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    x = wide["layer"]
    ax = axes[0]
    ax.plot(x, wide["proj_harmful"], marker="o", ms=3, label="harmful")
    ax.plot(x, wide["proj_benign"], marker="o", ms=3, label="benign")
    for c in groups.apart:
        ax.plot(x, wide[f"cat_{c}_proj"], marker="o", ms=3, ls="--", label=c)
    ax.set_ylabel("projection (0 = benign, 1 = harmful calibration mean)")
    ax.set_title(f"refusal direction, LM layer {facts['lm_layer']}")
    ax = axes[1]
    ax.plot(x, wide["refusal_harmful"], marker="o", ms=3, label="refusal score, harmful")
    ax.plot(x, wide["refusal_benign"], marker="o", ms=3, label="refusal score, benign")
    for c in groups.apart:
        ax.plot(x, wide[f"cat_{c}_refusal"], marker="o", ms=3, ls="--", label=f"refusal score, {c}")
    asr = "asr_probed" if "asr_probed" in wide else "asr" if "asr" in wide else None
    if asr:
        ax.plot(x, wide[asr], color="black", marker="s", ms=3, label=f"ASR ({facts['compare']['judge']})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("first-token refusal probability")
    for ax in axes[:2]:
        ax.axvline(facts["default_layer"], color="grey", ls=":", lw=1)
        ax.set_xlabel("vision layer (dotted: trained default)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    grid = long.pivot(index="lm_layer", columns="vision_layer", values="auroc").astype(float)
    image = axes[2].imshow(grid.to_numpy(), aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                           extent=(grid.columns.min() - 0.5, grid.columns.max() + 0.5, -0.5, len(grid) - 0.5))
    axes[2].set_xlabel("vision layer")
    axes[2].set_ylabel("LM layer (0 = first block's input)")
    axes[2].set_title("AUROC harmful vs benign")
    fig.colorbar(image, ax=axes[2])
    fig.suptitle(f"{facts['model']} · {facts['attack']}: refusal inside the LM by vision layer", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def write_outputs(
    out_dir: Path, cfg: DictConfig, groups: Groups, results: Sequence[LayerResult],
    scale: tuple[np.ndarray, np.ndarray], facts: dict[str, Any], items: Sequence[AttackItem],
) -> dict[str, Path]:
    """Write probe.csv, probe_layers.csv, probe.json and probe.png into `out_dir`; print the table and the paths."""
    facts["groups"] = groups.describe(items)
    wide, long = frames(results, groups, scale, facts["lm_layer"], facts["default_layer"])
    if cfg.probe.get("compare_sweep"):
        asr, judge = sweep_asr(cfg.probe.compare_sweep, facts["model"], facts["attack"], groups)
        wide = wide.merge(asr, on="layer", how="left")
        facts["compare"] = {"sweep": str(cfg.probe.compare_sweep), "judge": judge}
        facts["rank_correlation"] = rank_correlations(wide, groups)
    default = wide[wide["layer"] == facts["default_layer"]]
    facts["at_default_layer"] = (
        {k: None if pd.isna(v) else v for k, v in default.iloc[0].to_dict().items()} if len(default) else None
    )
    paths = {"csv": out_dir / PROBE_CSV, "long_csv": out_dir / PROBE_LONG_CSV, "json": out_dir / PROBE_JSON,
             "png": out_dir / PROBE_PNG}
    write_text_atomic(paths["csv"], wide.to_csv(index=False))
    write_text_atomic(paths["long_csv"], long.to_csv(index=False))
    write_json_atomic(paths["json"], facts)
    write_bytes_atomic(paths["png"], plot_probe(wide, long, groups, facts))
    console.print(probe_table(wide, groups, facts))
    for kind, path in paths.items():
        console.print(f"{kind}: {path}", markup=False, highlight=False, soft_wrap=True)
    return paths
