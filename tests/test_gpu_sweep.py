"""benchmarks/gpu_sweep.py: its code path on a shrunken config (CPU), and the docs section it maintains.

The figures themselves need CUDA (`python -m benchmarks.gpu_sweep`); here the same functions decode a
LLaVA-1.5-7B-structured model shrunk to a few layers, per layer and layer-batched, bf16 path and 4-bit.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO  # noqa: F401  (sets the offline environment and the model cache)

from benchmarks import gpu_sweep


@pytest.mark.slow
def test_tiny_sweep_runs_both_decodings_and_they_agree(capsys, cpu):
    assert gpu_sweep.main(["--tiny", "--layers", "3", "--prompts", "4", "--batch-size", "2", "--quant", "bf16,4bit"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    runs = [r for r in lines if "mode" in r]
    assert [(r["quant"], r["mode"]) for r in runs] == [
        ("fp32", "per-layer"), ("fp32", "layer-batched"), ("4bit", "per-layer"), ("4bit", "layer-batched")
    ]
    assert all(r["rows_done"] == r["rows_total"] == 12 for r in runs)
    assert [r["rows_per_call"] for r in runs] == [2, 6, 2, 6]  # 3 layers × 2 prompts per shared call
    assert [r for r in lines if "differing_answers" in r] == [
        {"quant": "fp32", "differing_answers": 0, "compared": 12}, {"quant": "4bit", "differing_answers": 0, "compared": 12}
    ]


def test_the_gpu_section_is_replaced_in_place_and_read_back(tmp_path):
    page = tmp_path / "PERFORMANCE.md"
    page.write_text("# Performance\n\nfigures\n")
    assert gpu_sweep.section(page) == gpu_sweep.NOT_RUN
    run = gpu_sweep.SweepRun("bf16", "per-layer", 100, 50, 6400, 10.0, 20.5, 13.5, 16)
    body = gpu_sweep.markdown([run], {"bf16": (0, 50)}, {
        "device": "X", "date": "d", "torch": "t", "transformers": "v", "layers": 25, "prompts": 4, "new_tokens": 128,
        "batch_size": 16, "budget_s": 90.0, "model": "llava15_7b",
    })
    gpu_sweep.write_section(page, body)
    gpu_sweep.write_section(page, body)  # a second run replaces the section, it does not add one
    text = page.read_text()
    assert text.startswith("# Performance\n\nfigures\n") and text.count(gpu_sweep.BEGIN) == 1
    assert gpu_sweep.section(page) == body
    assert "| bf16 | per-layer | 50 of 100 | 16 | 640 | 20 | 20.5 | 13.5 | 1.0× |" in body


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the skip on a machine without CUDA")
def test_without_cuda_it_skips_cleanly(capsys):
    assert gpu_sweep.main([]) == 0
    assert "skipped, no CUDA device" in capsys.readouterr().out
