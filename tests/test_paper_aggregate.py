"""Paper 1's early / middle / late aggregate of a layer sweep (vlmsafety/paper_aggregate.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vlmsafety.errors import VlmSafetyError
from vlmsafety.paper_aggregate import group_means, layer_groups
from vlmsafety.report import failure_groups, job_list

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "attacks"
# AdvBench rows already paired with COCO fixture images (column `image`): the preset needs no attack.image_dir
PAIRED_AC = FIXTURES / "advbench_coco" / "harmful_behaviors.csv"


def run_preset(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """The acceptance command as a user types it, offline, with an empty Hugging Face cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf_home"), "COLUMNS": "200"}
    cmd = [sys.executable, "run.py", "+experiment=paper1_advbench_coco", "model=tiny_llava", f"attack.path={PAIRED_AC}", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_thirds_of_the_encoder():
    # LLaVA-1.5's CLIP ViT-L/14: 24 blocks → 1-8, 9-16, 17-24 (layer 0 = embeddings, in no group)
    g = layer_groups("thirds", 24)
    assert g == {"early": list(range(1, 9)), "middle": list(range(9, 17)), "late": list(range(17, 25))}
    # Llama 3.2 Vision's 32 local blocks: cuts at round(32/3) = 11 and round(64/3) = 21
    g = layer_groups("thirds", 32)
    assert (g["early"][-1], g["middle"][0], g["middle"][-1], g["late"][0], g["late"][-1]) == (11, 12, 21, 22, 32)
    assert layer_groups({"early": [1, 2], "late": [23]}, 24) == {"early": [1, 2], "late": [23]}
    with pytest.raises(VlmSafetyError, match="paper.layer_groups='halves'"):
        layer_groups("halves", 24)


def test_group_means_hand_computed():
    values = {0: 0.9, 1: 0.2, 2: 0.4, 3: 0.9, 5: 0.1}  # layer 4 not measured
    means = group_means(values, {"early": [1, 2, 3], "middle": [4, 5], "late": [6]})
    assert means["early"] == (pytest.approx(0.5), 3, 3)  # (0.2 + 0.4 + 0.9) / 3
    assert means["middle"] == (pytest.approx(0.1), 1, 2)  # only layer 5 measured
    assert means["late"] == (None, 0, 1)


def test_an_unreadable_job_leaves_the_aggregate_of_the_others(tmp_path):
    from vlmsafety.paper_aggregate import aggregate_table

    paper = {"name": "paper1", "layer_groups": {"early": [1, 2], "late": [3]}}
    for job in ("0", "1", "2"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "metrics.json").write_text(json.dumps({"config": {"paper": paper}, "num_layers": 3}))
    (tmp_path / "2" / "metrics.json").write_bytes(b"")  # a 0-byte file: the summary lists the job as unreadable
    df = pd.DataFrame({
        "job": ["0", "1", "2"], "status": ["complete", "complete", "unreadable"], "layer": [1, 2, 3],
        "model": "m", "attack": "a", "unlearn": "none", "asr_keyword": [0.25, 0.75, None],
    })
    table = aggregate_table(tmp_path, df)
    cells = [list(col.cells) for col in table.columns]
    assert cells[2] == ["0.500"] and cells[3] == ["—"]  # early: (0.25 + 0.75) / 2; late: its one job unreadable


def test_identical_failures_are_listed_once():
    bad = pd.DataFrame({
        "job": [str(i) for i in range(25)] + ["25"],
        "status": ["failed"] * 25 + ["running"],
        "error": ["no judge checkpoint"] * 25 + [None],
    })
    groups = failure_groups(bad)
    assert [(key, len(jobs)) for key, jobs in groups] == [
        (("failed", "no judge checkpoint"), 25), (("running", "(no error recorded: killed or still running)"), 1),
    ]
    assert job_list(groups[0][1]) == "0, 1 … 24 (25 jobs)" and job_list(["3", "7"]) == "3, 7"


def test_a_missing_judge_checkpoint_names_the_offline_judge(monkeypatch):
    from omegaconf import OmegaConf

    import vlmsafety.models.source as source

    monkeypatch.setattr(source.hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(source, "try_to_load_from_cache", lambda *a, **k: None)  # nothing in the HF cache
    spec = OmegaConf.create({"name": "x", "id": "meta-llama/Llama-Guard-3-8B"})
    with pytest.raises(VlmSafetyError) as judge:
        source.ensure_hub_checkpoint(spec, key="judge.llamaguard3")
    assert str(judge.value).endswith(
        "or set judge.llamaguard3.path=/path/to/a/local/copy, or judge without it: judge=[keyword]"
    ) and "`hf download meta-llama/Llama-Guard-3-8B`" in str(judge.value)
    with pytest.raises(VlmSafetyError) as model:  # a model has no such alternative
        source.ensure_hub_checkpoint(spec, key="model")
    assert "judge=" not in str(model.value)


@pytest.mark.slow
def test_the_acceptance_command_offline_is_one_line_naming_the_judge_and_its_alternative(tmp_path):
    # as written in the issue: Llama Guard 3 8B (the preset's judge) cannot be on an offline machine, so every job
    # fails with the same line (how to get the checkpoint, or judge=[keyword]), listed once under the summary
    p = run_preset("-m", "layer=range(0,2)", "threads=1", f"hydra.sweep.dir={tmp_path / 'sweep'}", tmp=tmp_path)
    assert p.returncode == 1, p.stderr[-2000:]
    line = ("meta-llama/Llama-Guard-3-8B is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: download it "
            "with `hf download meta-llama/Llama-Guard-3-8B`")
    printed = p.stdout + p.stderr
    assert f"0, 1 (failed): {line}" in printed and "or judge without it: judge=[keyword]" in printed
    assert "image folder" not in printed and "Traceback" not in printed  # the fixture's rows carry their images


@pytest.mark.slow
def test_paper_preset_sweep_prints_the_layer_group_means(tmp_path):
    # the documented offline variant of the acceptance command (docs/reproduce.md), on layers 0-3: an offline judge
    # instead of Llama Guard 3, no toxicity scorer instead of Perspective
    sweep = tmp_path / "sweep"
    p = run_preset("-m", "layer=range(0,4)", "threads=1", "judge=[keyword]", "toxicity=none", "max_new_tokens=4",
                   "limit=2", f"hydra.sweep.dir={sweep}", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    printed = p.stdout + p.stderr  # the summary tables go to the rich console
    assert "mean over layer groups" in printed and "early 1–8, middle 9–16, late 17–24" in printed
    df = pd.read_csv(sweep / "summary.csv")
    assert sorted(df["layer"]) == [0, 1, 2, 3] and (df["status"] == "complete").all()
    early = df[df["layer"].between(1, 8)]["asr_keyword"].mean()  # layers 1-3 measured of 1-8
    assert f"{early:.3f} (3/8)" in printed
    # every prompt saw the image its row names
    named = {f"advbench-{i:03d}": row["image"] for i, row in enumerate(pd.read_csv(PAIRED_AC).to_dict("records"), 1)}
    records = [json.loads(line) for line in (sweep / "0" / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["image"]["spec"]["path"].endswith(named[r["id"]]) for r in records)
