"""The unlearning tables fit an 80-column terminal without cutting a number, and say what collapsed."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from vlmsafety.unlearn.summary import cost_table, results_tables


def _row(recipe, attack, part, n_harmful, n_benign, collapse="", **values):
    row = {"job": recipe, "model": "organism", "unlearn": recipe, "status": "complete", "attack": attack,
           "layer": 23, "default_layer": 23, "part": part, "reference_judge": "organism_oracle",
           "collapse": collapse, "n_harmful_before": n_harmful, "n_benign_before": n_benign}
    for key, (before, after) in values.items():
        row[f"{key}_before"], row[f"{key}_after"] = before, after
    return row


def render(table) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table)
    return out.getvalue()


def test_safety_and_utility_tables_fit_80_columns_and_list_collapses():
    rows = []
    for recipe, typo_after in (("multimodal", 0.31), ("textual", 0.58)):
        flag = "image degenerate (harmful) 0.08→0.42" if recipe == "textual" else ""
        rows.append(_row(recipe, "organism_typo", "image", 26, 0, flag, asr_organism_oracle=(0.92, typo_after),
                         asr_non_degenerate_organism_oracle=(1.0, 1.0), degenerate_harmful=(0.08, 0.42),
                         heldout_nll=(0.000305, 0.00094), forget_nll=(0.968, 2.74)))
        rows.append(_row(recipe, "organism_utility", "image", 0, 70, accuracy=(0.93, 0.93),
                         label_benign_refusal=(0.01, 0.01), degenerate_benign=(0.0, 0.0),
                         heldout_nll=(0.000305, 0.00094), forget_nll=(0.968, 2.74)))
    tables = results_tables(pd.DataFrame(rows))
    assert len(tables) == 2
    safety, utility = (render(t) for t in tables)
    for text in (safety, utility):
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "…" not in text
    assert "layer 23 (trained default)" in safety and "0.92→0.58" in safety and "0.92→0.31" in safety
    assert "COLLAPSE textual · organism_typo · image: image degenerate (harmful) 0.08→0.42" in " ".join(safety.split())
    assert "multimodal" in safety and "COLLAPSE multimodal" not in safety
    # benign rows go to the utility table only, harmful rows to the safety table only
    assert "organism_utility" in utility and "organism_utility" not in safety and "organism_typo" not in utility
    assert "0.93→0.93" in utility
    assert "textual: held-out NLL (image) 0.000305→0.00094, forget NLL 0.968→2.74" in " ".join(utility.split())


def test_layers_get_a_column_when_they_differ_and_cost_table_fits():
    rows = [_row("textual", "organism_typo", "image", 26, 0, asr_organism_oracle=(0.9, 0.5)),
            {**_row("textual", "organism_typo", "image", 26, 0, asr_organism_oracle=(0.8, 0.4)), "layer": 5}]
    safety, across = results_tables(pd.DataFrame(rows))
    assert "Across 2 vision layers" in render(across)
    text = render(safety)
    assert "23*" in text and " 5 " in text and "(trained default)" not in text
    costs = pd.DataFrame([
        {"unlearn": u, "model": "organism", "steps": 80, "tokens": t, "images": i, "train_flops": f,
         "train_flops_vs_textual": f / 7.13e10, "train_device_hours": h, "train_device_hours_vs_textual": h / 0.0018}
        for u, t, i, f, h in (("multimodal", 43533, 1280, 1.66e11, 0.0036), ("textual", 24115, 0, 7.13e10, 0.0018))
    ])
    text = render(cost_table(costs))
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "×2.33" in text and "×2.00" in text and "— organism" in text


def test_every_layer_gives_an_across_layers_table_with_worst_and_default_layers_and_held_out_rows():
    """25 layers: the safety / utility tables keep the default layer, the across-layers table names the
    worst layer before and after, the default layer's ASR and utility, and held-out items apart."""
    from vlmsafety.unlearn.summary import layer_plot, layer_rows

    rows = []
    for recipe in ("layerwise_sft", "textual"):
        for layer in range(25):
            before = 0.9 if layer == 21 else 0.1
            after = 0.3 if layer == 7 and recipe == "textual" else 0.0
            rows.append({**_row(recipe, "organism_typo", "image", 26, 0, asr_organism_oracle=(before, after),
                                asr_seen_organism_oracle=(before, after), asr_heldout_organism_oracle=(1.0, 0.5),
                                degenerate_harmful=(0.0, 0.0)), "layer": layer})
            rows.append({**_row(recipe, "organism_utility", "image", 0, 70, accuracy=(0.93, 0.9 if layer == 23 else 0.5),
                                label_benign_refusal=(0.01, 0.02), degenerate_benign=(0.0, 0.0)), "layer": layer})
    df = pd.DataFrame(rows)
    tables = results_tables(df)
    assert len(tables) == 3
    safety, utility, across = (render(t) for t in tables)
    assert "layer 23 (trained default)" in safety  # one layer left in the per-layer tables
    text = " ".join(across.split())
    for out in (safety, utility, across):
        assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out
    assert "textual typo trained 0.90 L21→0.30 L7 0.10→0.00" in text
    assert "layerwise_sft typo held-out 1.00 L0→0.50 L0" in text
    assert "layerwise_sft utility 0.01→0.02 0.93→0.90" in text  # the default layer's utility, not the worst
    worst = layer_rows(df)
    assert set(worst["items"]) == {"trained", "held-out", "benign"}
    png = layer_plot(df)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
