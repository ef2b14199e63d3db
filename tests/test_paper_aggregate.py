"""Paper 1's early / middle / late aggregate of a layer sweep (vlmsafety/paper_aggregate.py)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vlmsafety.errors import VlmSafetyError
from vlmsafety.paper_aggregate import group_means, layer_groups

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "attacks"


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


@pytest.mark.slow
def test_paper_preset_sweep_prints_the_layer_group_means(tmp_path):
    # the acceptance command, on layers 0-3 only, with offline judge and scorer instead of the paper's
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, "run.py", "+experiment=paper1_advbench_coco", "model=tiny_llava",
        f"attack.path={FIXTURES / 'advbench' / 'harmful_behaviors.csv'}", f"attack.image_dir={FIXTURES / 'coco' / 'val2014'}",
        "-m", "layer=range(0,4)", "threads=1", "judge=[keyword]", "toxicity=none", "max_new_tokens=4", "limit=2",
        f"hydra.sweep.dir={sweep}",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = out.stdout + out.stderr  # the summary tables go to the rich console
    assert "mean over layer groups" in printed and "early 1–8, middle 9–16, late 17–24" in printed
    df = pd.read_csv(sweep / "summary.csv")
    early = df[df["layer"].between(1, 8)]["asr_keyword"].mean()  # layers 1-3 measured of 1-8
    assert f"{early:.3f} (3/8)" in printed
