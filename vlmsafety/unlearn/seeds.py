"""The recipe comparison over several sweeps (seeds), as docs/alignment.md prints it.

    python -m vlmsafety.unlearn.seeds SWEEP_DIR [SWEEP_DIR ...]

Reads each sweep's `unlearn_summary.csv` and `unlearn_cost.csv` (written by the sweep summary) and
prints one markdown row per recipe (and one for the model before training): per harmful attack set
the worst layer's ASR after training (the trained and the held-out items of a set apart when it has
both), the default layer's utility accuracy and over-refusal on benign sets, the share of degenerate
answers to harmful prompts (at the default layer / averaged over layers), and the training cost as a
multiple of the `textual` job's. A value is the mean over the sweeps, with the range when they differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from vlmsafety.unlearn.summary import COST_CSV, UNLEARN_CSV, layer_rows


def sweep_figures(sweep_dir: Path, split: tuple[str, ...] = ("typo",)) -> pd.DataFrame:
    """One row per recipe (plus `before`) of one sweep: the columns the comparison table shows.

    split: attack sets (names without the `organism_` prefix) shown as trained and held-out items apart;
    the others over all their items."""
    df = pd.read_csv(sweep_dir / UNLEARN_CSV)
    costs = pd.read_csv(sweep_dir / COST_CSV).set_index("unlearn")
    whole = layer_rows(df.drop(columns=[c for c in df.columns if c.startswith(("asr_seen_", "asr_heldout_"))]))
    apart = layer_rows(df)
    out = []
    for recipe, rows in df.groupby("unlearn", sort=False):
        for phase in ("before", "after"):
            row: dict = {"recipe": "before" if phase == "before" else recipe}
            for _, w in pd.concat([whole, apart[apart["items"].isin(["trained", "held-out"])]]).iterrows():
                name = str(w["attack"]).removeprefix("organism_")
                if w["unlearn"] != recipe or (w["items"] in ("trained", "held-out")) != (name in split):
                    continue
                if w["items"] == "benign":
                    row[f"{name} accuracy"] = w[f"accuracy_{phase}"]
                    row[f"{name} refused"] = w[f"refusal_{phase}"]
                else:
                    row[f"{name}{'' if w['items'] == 'all' else ' ' + str(w['items'])} worst ASR"] = w[f"worst_asr_{phase}"]
            harmful = rows[pd.to_numeric(rows["n_harmful_before"], errors="coerce").fillna(0) > 0]
            weights = harmful["n_harmful_before"].astype(float)
            share = (harmful[f"degenerate_harmful_{phase}"].astype(float) * weights).groupby(harmful["layer"]).sum() / (
                weights.groupby(harmful["layer"]).sum())
            default = harmful["default_layer"].dropna()
            row["degenerate default"] = share.get(default.iloc[0]) if not default.empty else None
            row["degenerate mean"] = share.mean()
            if phase == "after" and recipe in costs.index:
                row["FLOPs ×textual"] = costs.loc[recipe, "train_flops_vs_textual"]
                row["device-h ×textual"] = costs.loc[recipe, "train_device_hours_vs_textual"]
            out.append(row)
    frame = pd.DataFrame(out)
    return pd.concat([frame[frame["recipe"] == "before"].head(1), frame[frame["recipe"] != "before"]])


def seed_table(sweeps: list[Path]) -> str:
    """The markdown table: per recipe and column, the mean over sweeps (and the min–max range when they differ)."""
    frames = [sweep_figures(s) for s in sweeps]
    cols = sorted(dict.fromkeys(c for f in frames for c in f.columns if c != "recipe"), key=_column_order)
    recipes = list(dict.fromkeys(r for f in frames for r in f["recipe"]))
    lines = ["| recipe | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for recipe in recipes:
        cells = []
        for col in cols:
            values = [float(v) for f in frames for v in f.loc[f["recipe"] == recipe, col] if col in f and pd.notna(v)]
            if not values:
                cells.append("")
                continue
            mean, lo, hi = sum(values) / len(values), min(values), max(values)
            cells.append(f"{mean:.2f}" + ("" if hi - lo < 0.005 else f" ({lo:.2f}–{hi:.2f})"))
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _column_order(col: str) -> tuple[int, int, str]:
    """ASR columns first (text, image, typo, grounded, then other sets), then utility, degenerate share, cost."""
    kinds = ("worst ASR", "accuracy", "refused", "degenerate", "×textual")
    kind = next((k for k, word in enumerate(kinds) if word in col), len(kinds))
    sets = ("text", "image", "typo", "grounded", "utility", "benign")
    where = next((k for k, name in enumerate(sets) if col.startswith(name)), len(sets))
    return kind, where, col.replace("trained", "0")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m vlmsafety.unlearn.seeds SWEEP_DIR [SWEEP_DIR ...]")
    print(f"{len(sys.argv) - 1} sweep(s): " + ", ".join(sys.argv[1:]))
    print(seed_table([Path(p) for p in sys.argv[1:]]))
