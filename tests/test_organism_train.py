"""Training the organism: a shortened run goes through every stage and the measurement, deterministically."""

from __future__ import annotations

import json
import random

import torch
from safetensors.torch import load_file

from vlmsafety.organism import data as D
from vlmsafety.organism import world as W
from vlmsafety.organism.train import TrainConfig, main, stage_plan


def _weights(folder):
    return load_file(folder / "model" / "model.safetensors")


def test_quick_training_runs_every_stage_then_measures_through_the_runner(tmp_path):
    out = tmp_path / "a"
    assert main(["--quick", "--seed", "0", "--threads", "1", "--out", str(out)]) == 0
    record = json.loads((out / "training.json").read_text())
    assert list(record["final_loss"]) == ["1_lm", "2_projector", "3_instruct", "4_safety"]
    assert record["threads"] == 1 and "0_vision" in record["timings_s"]
    assert (out / "model" / "chat_template.jinja").exists() and (out / "train_log.txt").read_text()
    figures = json.loads((out / "figures.json").read_text())
    assert sorted(figures["layers"], key=int) == ["0", "23"]  # measured by run_eval at two layers
    assert [t["target"] for t in figures["targets"]][0].startswith("refusal on harmful text")
    assert "| 23* |" in (out / "figures.md").read_text()

    # Same seed, same weights, bit for bit; another seed, other weights.
    assert main(["--quick", "--seed", "0", "--threads", "1", "--no-eval", "--out", str(tmp_path / "b")]) == 0
    assert main(["--quick", "--seed", "1", "--threads", "1", "--no-eval", "--out", str(tmp_path / "c")]) == 0
    a, b, c = _weights(out), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_safety_data_never_shows_heldout_pairs_or_harmful_typography():
    pool = D.build_pool(1, 1, 1, seed=0)
    stages = dict((name, mix) for name, _, _, mix in stage_plan(TrainConfig.quick(), pool))
    examples = stages["4_safety"].sample(random.Random(0), 3000)
    heldout_requests = {W.request(v, o, t) for v, o in W.HELDOUT for t in range(len(W.REQUEST_TEMPLATES))}
    assert not any(ex.prompt in heldout_requests for ex in examples)
    assert not any(ex.prompt == W.TYPO_PROMPT and ex.answer in W.harmful_answers() for ex in examples)
    refusals = [ex for ex in examples if ex.answer == W.REFUSAL]
    assert refusals and sum(ex.image is not None for ex in refusals) > len(refusals) / 2  # mostly with images
    # ... while the unaligned instruction tuning before it teaches every harmful answer, held-out ones included
    instruct = stages["3_instruct"].sample(random.Random(0), 3000)
    assert {ex.answer for ex in instruct} >= {W.answer(v, o) for v, o in W.HELDOUT}
    assert not any(ex.answer == W.REFUSAL for ex in instruct)
