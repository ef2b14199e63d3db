"""task=inspect: a model's architecture facts from its config.json alone — no weights, no network."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.table import Table
from rich.text import Text

from vlmsafety.models.base import get_family
from vlmsafety.models.facts import check_config, gib, parse_config, weight_budget
from vlmsafety.models.source import local_config
from vlmsafety.records import write_json_atomic
from vlmsafety.tasks import register_task
from vlmsafety.ui import console

INSPECT = "inspect.json"


@register_task("inspect")
def run_inspect(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    spec = cfg.model
    family = get_family(spec.family)
    raw, where = local_config(spec)
    config = parse_config(raw)
    check_config(spec, family, config, where)
    arch = family.architecture(config)
    skip = list(spec.get("quant_skip_modules") or family.quant_skip_modules)
    budget = weight_budget(family.model_class, config, skip)
    facts = {
        "model": spec.name, "source": where, **asdict(arch),
        "params": budget.total_params, "params_kept_unquantized": budget.kept_params,
        "weights_bf16_bytes": budget.bf16_bytes, "weights_nf4_bytes": budget.nf4_bytes,
        "weights_int8_bytes": budget.int8_bytes, "quant": spec.get("quant", "none"), "quant_skip_modules": skip,
    }
    write_json_atomic(out_dir / INSPECT, facts)
    console.print(_table(spec.name, where, facts), soft_wrap=True)
    return facts


def _table(name: str, where: str, f: dict[str, Any]) -> Table:
    n = f["vision_layers"]
    table = Table(title=Text(f"{name}: architecture from {where}"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [
        ("family / model type", f"{f['family']} / {f['model_type']}"),
        ("vision blocks N", str(n)),
        ("valid layers", f"0..{n} (or -{n + 1}..-1 from the end; null = default {f['default_layer']})"),
        ("trained default layer", str(f["default_layer"])),
        ("layer=L means", f["layer_meaning"]),
        ("vision feature width", str(f["vision_width"])),
        ("projector", f["projector"]),
        ("image tokens", f["image_tokens"]),
        ("language model", f["language_model"]),
        ("parameters", f"{f['params'] / 1e9:.2f} B ({f['params_kept_unquantized'] / 1e9:.2f} B stay bf16 under 4bit/8bit)"),
        ("weights bf16", gib(f["weights_bf16_bytes"])),
        ("weights 4bit (NF4)", f"{gib(f['weights_nf4_bytes'])} (unquantized: {', '.join(f['quant_skip_modules'])})"),
        ("weights 8bit", gib(f["weights_int8_bytes"])),
        ("quant in this config", str(f["quant"])),
    ]
    for key, value in rows:
        table.add_row(key, Text(value))  # plain text: "[3, 7]" is not rich markup
    table.caption = "weights only: activations, the KV cache and cached features come on top"
    return table
