"""End to end through Hydra, as a user runs it: `python run.py ...` in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
from attack_fixtures import FIXTURES
from conftest import REPO

pytestmark = pytest.mark.slow


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_layer_sweep_written_exactly_as_in_the_docs(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_cli("-m", "layer=range(0,24)", "limit=3", "max_new_tokens=3", f"hydra.sweep.dir={sweep}")
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = sorted((d for d in sweep.iterdir() if d.is_dir()), key=lambda d: int(d.name))
    assert len(jobs) == 24
    layers = []
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text())
        assert m["status"] == "complete" and m["n"] == 3
        assert m["model"] == "organism" and m["attack"] == "organism"  # the defaults
        assert set(m["asr"]) == {"keyword", "organism_oracle"} and "profanity" in m["toxicity"]
        assert m["vs_reference"]["keyword"]["reference"] == "organism_oracle"
        assert {"load", "encode", "generate", "judge", "total"} <= set(m["timings_s"])
        assert m["device"].startswith("cpu") and m["gpu_hours"] == 0.0 and m["device_hours"] > 0
        assert m["quant"] == "none" and m["model_memory_bytes"] > 0
        rows = [json.loads(line) for line in (job / "generations.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all(r["layer"] == m["layer"] for r in rows)
        assert (job / ".hydra" / "config.yaml").exists()
        layers.append(m["layer"])
    assert layers == list(range(24))
    with open(sweep / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [int(r["layer"]) for r in summary] == list(range(24))
    # the ground-truth judge's view: per-category rates and the keyword judge scored against it
    assert summary[0]["reference_judge"] == "organism_oracle"
    assert {"fpr_keyword", "fnr_keyword", "cat_typo_unsafe_organism_oracle", "label_organism_oracle_harmful_degenerate"} <= set(summary[0])
    assert "FPR" in p.stderr + p.stdout and "degen." in p.stderr + p.stdout
    assert (sweep / "asr_vs_layer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ASR by layer" in p.stderr + p.stdout

    # task=report rewrites the same summary from the job folders alone
    (sweep / "summary.csv").unlink()
    p = run_cli("task=report", f"sweep_dir={sweep}", f"hydra.run.dir={tmp_path / 'report'}")
    assert p.returncode == 0, p.stderr[-3000:]
    with open(sweep / "summary.csv") as f:
        assert list(csv.DictReader(f)) == summary


def test_same_config_twice_gives_byte_identical_generations(tmp_path):
    args = ("model=tiny_llava", "attack=builtin_figstep", "judge=[keyword]", "layer=7", "limit=12", "max_new_tokens=6",
            "batch_size=5")
    for run in ("a", "b"):
        p = run_cli(*args, f"hydra.run.dir={tmp_path / run}")
        assert p.returncode == 0, p.stderr[-3000:]
    a = (tmp_path / "a" / "generations.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "generations.jsonl").read_bytes()
    rows = [json.loads(line) for line in a.decode().splitlines()]
    assert len(rows) == 12 and all(r["image"]["sha256"] and r["prompt"].startswith("USER: <image>\n") for r in rows)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("layer=40",), "valid layers are 0..24"),
        (("model=llava_nonexistent",), "valid choices: "),
        (("attack=nope",), "unknown attack 'nope'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, expected):
    p = run_cli(*args, "limit=2", f"hydra.run.dir={tmp_path}")
    assert p.returncode == 2
    assert expected in p.stderr and "Traceback" not in p.stderr
    error_lines = [line for line in p.stderr.splitlines() if expected in line]
    assert len(error_lines) == 1


def test_help_lists_the_config_groups():
    p = run_cli("--help")
    assert p.returncode == 0
    for group in ("model:", "attack:", "judge:", "toxicity:", "unlearn:"):
        assert group in p.stdout
    assert "tiny_llava" in p.stdout and "builtin_figstep" in p.stdout


def test_sweep_over_upstream_attack_files_from_one_folder(tmp_path):
    # The acceptance command: one attack.path folder serves both sets (each finds its upstream file name).
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "advbench" / "harmful_behaviors.csv", data)
    shutil.copy(FIXTURES / "FigStep" / "data" / "question" / "safebench.csv", data)
    with open(data / "harmful_behaviors.csv", "ab") as f:
        f.write(b"Caf\xe9 fixture request that is not UTF-8,Sure\n")  # skipped and counted
    sweep = tmp_path / "sweep"
    p = run_cli(
        "-m", "attack=advbench,figstep", "layer=10,23", f"attack.path={data}", "attack.on_bad_row=skip",
        "limit=2", "max_new_tokens=2", f"hydra.sweep.dir={sweep}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    with open(sweep / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [(r["attack"], int(r["layer"]), r["status"], int(r["n"])) for r in summary] == [
        ("advbench", 10, "complete", 2), ("advbench", 23, "complete", 2),
        ("figstep", 10, "complete", 2), ("figstep", 23, "complete", 2),
    ]
    assert [int(r["rows_skipped"]) for r in summary] == [1, 1, 0, 0]
    for row in summary:
        m = json.loads((sweep / row["job"] / "metrics.json").read_text())
        upstream = "harmful_behaviors.csv" if row["attack"] == "advbench" else "safebench.csv"
        assert m["attack_source"] == str(data / upstream)
        gens = [json.loads(line) for line in (sweep / row["job"] / "generations.jsonl").read_text().splitlines()]
        if row["attack"] == "figstep":
            assert all(g["image"]["spec"]["kind"] == "figstep" and g["id"].startswith("safebench-") for g in gens)
        else:
            assert all(g["image"] is None and g["id"].startswith("advbench-") for g in gens)
    assert "skipped" in p.stderr and "data row 5" in p.stderr
