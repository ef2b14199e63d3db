"""The benchmark report from given figures: terminal tables within 80 columns, and prose that follows the
measurements (a target is "met" or "missed" by the numbers; the OpenMP paragraph says which policy won)."""

from __future__ import annotations

import io

from rich.console import Console

from benchmarks.generation import GenerationRun, WidthRun
from benchmarks.report import Results, console_tables, write_markdown
from benchmarks.sweep_cost import SweepRun
from benchmarks.unlearning import UnlearnRun


def results(active: float, passive: float, tokens_b16: float = 1464.0) -> Results:
    phases = {"total": 40.0, "load": 0.4, "judge_load": 0.5, "encode": 0.5, "generate": 31.6, "judge": 0.3, "toxicity": 0.2}
    return Results(
        machine={"date": "2026-11-29", "cpu": "test CPU", "cores": 2, "cores_usable": 2, "ram_gib": 23.5, "gpu": None,
                 "torch_threads": 2, "omp_wait_policy": "PASSIVE", "os": "Linux", "git_commit": "abc",
                 "versions": {"python": "3.11", "torch": "2.13.0", "transformers": "5", "hydra-core": "1.3.8"}},
        load_before=(0.7, 0.8, 1.0), load_after=(1.0, 0.9, 1.0), model="organism", attack="organism",
        max_new_tokens=64, batch_size=16, threads=1, n_layers=25, import_s=4.3, teardown_s=1.4,
        naive=SweepRun("naive: one process per layer", "run.py layer=L", 204.1, 25, 25,
                       {**phases, "generate": 46.6, "total": 100.0}),
        multirun=SweepRun("one process, `-m layer=...`", "run.py -m", 46.4, 1, 25, phases),
        layers_job=SweepRun("one process, one job `layers=[...]`", "run.py layers=[...]", 49.8, 1, 1,
                            {**phases, "generate": 39.7, "total": 44.0}),
        generation=[GenerationRun(1, 32, 224, 224 / 259), GenerationRun(4, 32, 224, 224 / 514),
                    GenerationRun(16, 32, 224, 224 / tokens_b16)],
        spin={"ACTIVE": [{"batch_size": 1, "tokens_per_s": active}, {"batch_size": 8, "tokens_per_s": active * 4}],
              "PASSIVE": [{"batch_size": 1, "tokens_per_s": passive}, {"batch_size": 8, "tokens_per_s": passive * 4}],
              "ONE_THREAD": [{"batch_size": 1, "tokens_per_s": 411.0}, {"batch_size": 8, "tokens_per_s": 2900.0}]},
        unlearning=[UnlearnRun("textual", 4, 6, 0.205, 302, 0, 0, 8.93e8),
                    UnlearnRun("multimodal", 4, 6, 0.329, 548, 16, 256, 2.08e9)],
        bench_s=354.0,
    )


def test_console_tables_fit_80_columns_without_cutting_numbers():
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    for table in console_tables(results(349, 232)):
        console.print(table)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for figure in ("processes", "204.1", "4.4×", "5.7×", "0.329", "2.08e+09", "2.33×", "MISSED", "met"):
        assert figure in text


def test_markdown_prose_follows_the_figures(tmp_path):
    path = tmp_path / "PERFORMANCE.md"
    write_markdown(results(active=349, passive=232), path)
    lost = path.read_text()
    assert "batch 1: 349 → 232 tokens/s" in lost and "Passive waiting lost here" in lost
    assert "batch 1: 411 tokens/s, batch 8: 2900 tokens/s" in lost
    assert "target 10×: missed" in lost and "target 6×: missed" in lost
    # the overhead verdict is the Targets table's: the leaner one-process run (20 %)
    assert "(20 % at best; target ≤ 25 %: met)" in lost and "| its overhead ≤ 25 % of wall | 32 % / 20 % | met |" in lost

    write_markdown(results(active=120, passive=300, tokens_b16=2000.0), path)
    won = path.read_text()
    assert "Passive waiting won here" in won and "Passive waiting lost" not in won
    assert "(7.7× at batch 16; target 6×: met)" in won


def test_layer_batching_targets_and_the_gpu_section_follow_the_figures(tmp_path):
    import dataclasses

    from benchmarks import gpu_sweep

    r = results(349, 232)
    alone = dataclasses.replace(r.multirun, name="one process, `-m layer=...`, layers decoded apart", wall_s=60.0)
    ops = {"matrix products": 1.11, "KV cache growth (cat)": 0.2, "attention": 0.33, "element-wise": 0.13, "other": 0.2}
    r = dataclasses.replace(
        r, multirun_alone=alone, startup={"python -c pass": 0.05, "run.py --help": 1.2, "config error (run.py model=nope)": 1.7},
        torch_free={"python -c pass": True, "run.py --help": True, "config error (run.py model=nope)": True},
        widths=[WidthRun("one call per layer", 64, 25, 2.51, ops, 1600, 1600),
                WidthRun("one call, all layers", 1600, 1, 2.7, {**ops, "KV cache growth (cat)": 0.52}, 1599, 1600)],
    )
    path = tmp_path / "PERFORMANCE.md"
    write_markdown(r, path)
    text = path.read_text()
    # naive 204.1 s over 25 layers = 8.2 s a run; the shared sweep 46.4 s = 4.4× naive, 5.7× one run
    assert "| `-m layer=...` ≥ 15× faster than naive | 4.4× | MISSED |" in text
    assert "| `-m layer=...` ≤ 2.5× one single-layer run | 5.7× (46.4 s vs 8.2 s) | MISSED |" in text
    assert "| run.py --help < 1.5 s | 1.20 s | met |" in text and "| config error (run.py model=nope) < 1.5 s | 1.70 s | MISSED |" in text
    assert "| run.py --help | 1.20 | no |" in text
    assert "| one call, all layers | 1600 | 1 | 2.70 | 1599/1600 |" in text
    assert "| how | matrix products | KV cache growth (cat) | attention | element-wise | other |" in text
    assert "| one call, all layers | 1.11 | 0.52 | 0.33 | 0.13 | 0.20 |" in text
    assert ("the wide call took 1.08× the narrow calls' time; its operator time against theirs, by kind: matrix "
            "products 1.0×, KV cache growth 2.6×, attention 1.0×, element-wise 1.0×, other 1.0×.") in text
    assert gpu_sweep.section(path) == gpu_sweep.NOT_RUN  # no GPU run yet: the section says so, between its markers
    gpu_sweep.write_section(path, "figures")
    write_markdown(dataclasses.replace(r, gpu_section=gpu_sweep.section(path)), path)  # `make bench` keeps it
    assert gpu_sweep.section(path) == "figures"
