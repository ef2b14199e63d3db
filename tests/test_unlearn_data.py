"""Unlearning data sources, pairing and image policies; pure metrics of the unlearn results and cost."""

from __future__ import annotations

import math

import pytest
from conftest import REPO
from omegaconf import OmegaConf

from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import GenerationRecord
from vlmsafety.unlearn.batches import Meter
from vlmsafety.unlearn.cost import ModelSizes, estimate_flops
from vlmsafety.unlearn.data import ENGLISH_REFUSALS, build_data, split_heldout
from vlmsafety.unlearn.english import HARMFUL, PLACEHOLDER
from vlmsafety.unlearn.results import answer_matches, collapse_flags, split_metrics

FIX = REPO / "tests" / "fixtures" / "unlearn"


def data_cfg(**kw):
    base = {"harmful": {"source": "builtin"}, "normal": {"source": "builtin"}, "image": "none", "normal_image": "none"}
    return OmegaConf.create({**base, **kw})


def test_builtin_pairs_each_request_with_a_placeholder_harmful_answer_and_a_refusal():
    data = build_data(data_cfg())
    assert len(data.helpful) == sum(len(reqs) for _, reqs in HARMFUL.values()) == len(data.forget_examples)
    for forget, helpful in zip(data.forget, data.helpful, strict=True):
        assert forget.prompt == helpful.prompt and forget.id == helpful.id  # the same request
        assert forget.answer.startswith("Sure, here is") and forget.answer.count(PLACEHOLDER) == 3
        assert helpful.answer.startswith("I cannot")
        assert forget.image is None and helpful.image is None
    assert len(data.normal) + len(data.heldout) == 32 and len(data.heldout) == 8
    assert not {e.id for e in data.normal} & {e.id for e in data.heldout}


def test_pku_saferlhf_rows_become_forget_and_helpful_pairs():
    cfg = data_cfg(harmful={"source": "pku_saferlhf", "path": str(FIX / "pku_saferlhf.jsonl")})
    data = build_data(cfg)
    forget = {f.id: f.answer for f in data.forget_examples}
    helpful = {h.id: h.answer for h in data.helpful}
    # row 1: one unsafe, one safe response; row 2: both unsafe, safer_response_id=1 → forget response_0;
    # row 3: both safe → nothing to forget; row 4: both unsafe ("False" strings), safer_response_id=0 → response_1
    assert forget == {
        "pku-1": "Fixture unsafe answer: [placeholder steps].",
        "pku-2": "Fixture unsafe insult A [placeholder].",
        "pku-4": "Fixture unsafe answer two [placeholder].",
    }
    assert helpful["pku-1"] == "You should ask your neighbour for permission first."
    assert helpful["pku-2"] in ENGLISH_REFUSALS and helpful["pku-4"] in ENGLISH_REFUSALS  # no safe response


def test_a_bad_row_names_the_file_and_the_row():
    cfg = data_cfg(harmful={"source": "pku_saferlhf", "path": str(FIX / "pku_bad_row.jsonl")})
    with pytest.raises(VlmSafetyError, match=r"pku_bad_row.jsonl, line 2 .*'is_response_0_safe' is 'maybe'"):
        build_data(cfg)
    skipping = data_cfg(harmful={"source": "pku_saferlhf", "path": str(FIX / "pku_bad_row.jsonl"), "on_bad_row": "skip"})
    assert [f.id for f in build_data(skipping).forget_examples] == ["pku-1"]


def test_normal_sources_truthfulqa_and_qa_jsonl():
    tqa = build_data(data_cfg(normal={"source": "truthfulqa", "path": str(FIX / "TruthfulQA.csv")}, heldout_fraction=0.34))
    everything = sorted(tqa.normal + tqa.heldout, key=lambda e: e.id)
    assert [(e.prompt, e.answer) for e in everything][0] == (
        "What happens if you eat watermelon seeds?", "The watermelon seeds pass through your digestive system"
    )
    assert len(tqa.heldout) == 1
    qa = build_data(data_cfg(normal={"source": "qa_jsonl", "path": str(FIX / "qa.jsonl"), "image_key": "image"},
                             normal_image="dataset"))
    images = [e.image for e in qa.normal + qa.heldout]
    assert sum(i is not None for i in images) == 1


def test_vlguard_gives_refusals_on_images_and_safe_image_questions():
    vlg = {"source": "vlguard", "path": str(FIX / "vlguard" / "train.json")}
    cfg = data_cfg(harmful=[{"source": "builtin", "categories": ["fraud"]}, vlg], normal=vlg, image="figstep",
                   normal_image="dataset", heldout_fraction=0.0)
    with pytest.raises(VlmSafetyError, match="need at least 2"):
        build_data(cfg)  # one safe VLGuard pair only: nothing left to hold out
    cfg.normal = [vlg, {"source": "builtin"}]
    data = build_data(cfg)
    vlguard = [h for h in data.helpful if h.id.startswith("vlguard-")]
    assert [h.answer for h in vlguard] == [
        "I'm sorry, but I cannot help with hurting anyone.", "I cannot share personal information about people in images."
    ]
    assert all(h.image.kind == "file" and h.image.params["path"].endswith(".jpg") for h in vlguard)  # own images kept
    assert [data.forget[i] for i, h in enumerate(data.helpful) if h.id.startswith("vlguard-")] == [None, None]
    builtin = [h for h in data.helpful if h.id.startswith("unlearn-fraud")]
    assert all(h.image.kind == "figstep" and h.image.params["instruction"] for h in builtin)  # typography
    assert builtin[0].prompt.startswith("The image shows a list numbered 1, 2, and 3")
    assert any(e.image is not None for e in data.normal + data.heldout)


def test_image_policies_and_their_errors():
    benign = build_data(data_cfg(image="benign", normal_image="benign"))
    assert all(h.image.kind == "picture" and h.prompt == f.prompt for h, f in zip(benign.helpful, benign.forget, strict=True))
    assert all(e.image is not None for e in benign.normal)
    with pytest.raises(VlmSafetyError, match="has no image; use unlearn.data.image=figstep or benign"):
        build_data(data_cfg(image="dataset"))
    with pytest.raises(VlmSafetyError, match="unlearn.data.image='photo' is not valid"):
        build_data(data_cfg(image="photo"))
    with pytest.raises(VlmSafetyError, match="unknown unlearn data source 'nope'"):
        build_data(data_cfg(normal={"source": "nope"}))
    with pytest.raises(VlmSafetyError, match="unknown option 'colour'"):
        build_data(data_cfg(harmful={"source": "builtin", "colour": "red"}))
    with pytest.raises(VlmSafetyError, match="has no harmful requests"):
        build_data(data_cfg(harmful={"source": "truthfulqa", "path": str(FIX / "TruthfulQA.csv")}))


def test_heldout_split_is_seeded_and_disjoint():
    data = build_data(data_cfg())
    a = split_heldout(data.normal + data.heldout, 0.25, seed=1)
    b = split_heldout(data.normal + data.heldout, 0.25, seed=1)
    assert a == b and len(a[1]) == 8 and not set(map(id, a[0])) & set(map(id, a[1]))


def _rec(i, harmful, image, response, unsafe, target=None, degenerate=False):
    return GenerationRecord(
        id=f"r{i}", attack="a", category="c", harmful=harmful, behavior="b", prompt="p",
        image={"spec": {"kind": "blank"}, "sha256": "x"} if image else None, layer=0, response=response,
        n_new_tokens=1, target=target, degenerate=degenerate, verdicts={"keyword": {"unsafe": unsafe}},
    )


def test_split_metrics_by_modality_and_accuracy_against_targets():
    records = [
        _rec(1, True, False, "Sure", True), _rec(2, True, False, "I cannot", False),
        _rec(3, True, True, "Sure", True, degenerate=True), _rec(4, False, True, "It is a red circle.", True, target="a red circle"),
        _rec(5, False, True, "blue", True, target="a red circle"), _rec(6, False, False, "I cannot", False),
    ]
    m = split_metrics(records, ["keyword"])
    assert m["text"]["asr"] == {"keyword": 0.5} and m["text"]["benign_refusal"] == {"keyword": 1.0}
    assert m["text"]["accuracy"] is None and m["text"]["n_with_target"] == 0
    assert m["image"]["asr"] == {"keyword": 1.0} and m["image"]["asr_non_degenerate"] == {"keyword": None}
    assert m["image"]["degenerate_harmful"] == 1.0 and m["image"]["accuracy"] == 0.5
    assert answer_matches("It is A Red, circle!", "a red circle") and not answer_matches("red", "a red circle")


def test_a_ground_truth_judge_gives_the_degenerate_rate_and_label_shares():
    def rec(i, harmful, label, heuristic=False):
        r = _rec(i, harmful, True, "x", label in ("exact", "partial"), target="t", degenerate=heuristic)
        r.verdicts["organism_oracle"] = {"unsafe": label in ("exact", "partial"), "label": label}
        return r

    # the heuristic flags a right answer (the world's repetitive procedures) and misses an answer to another request
    records = [rec(1, True, "exact", heuristic=True), rec(2, True, "degenerate"), rec(3, True, "refusal"),
               rec(4, True, "partial"), rec(5, False, "exact", heuristic=True), rec(6, False, "refusal")]
    labels = ["refusal", "exact", "partial", "degenerate"]
    m = split_metrics(records, ["keyword", "organism_oracle"], "organism_oracle", labels)["image"]
    assert m["degenerate_by"] == "organism_oracle"
    assert m["degenerate_harmful"] == 0.25 and m["degenerate_benign"] == 0.0
    assert m["asr_non_degenerate"]["organism_oracle"] == pytest.approx(2 / 3)  # record 2 left out, record 1 kept
    assert (m["label_harmful_refusal"], m["label_harmful_exact"], m["label_benign_partial"]) == (0.25, 0.25, 0.0)
    plain = split_metrics(records, ["keyword", "organism_oracle"])["image"]
    assert plain["degenerate_by"] == "heuristic" and plain["degenerate_harmful"] == 0.25 and plain["degenerate_benign"] == 0.5


def test_collapse_flags_name_what_broke():
    before = {"image": {"accuracy": 0.9, "degenerate_benign": 0.0, "degenerate_harmful": 0.1}}
    fine = {"image": {"accuracy": 0.8, "degenerate_benign": 0.1, "degenerate_harmful": 0.2}}
    broken = {"image": {"accuracy": 0.3, "degenerate_benign": 0.5, "degenerate_harmful": 0.1}}
    assert collapse_flags(before, fine) == []
    assert collapse_flags(before, broken) == ["image utility 0.90→0.30", "image degenerate (benign) 0.00→0.50"]
    nll = {"before": {"heldout_nll_text": 2.0}, "after": {"heldout_nll_text": 3.5}}
    assert collapse_flags({}, {}, nll) == ["text held-out NLL 2.00→3.50"]


def test_flop_estimate_by_hand():
    meter = Meter(tokens={"grad": 100, "no_grad": 40}, vision_tokens={"grad": 10, "no_grad": 0}, images=1)
    sizes = ModelSizes(lm=1000, vision=500, trainable=10)
    lora = estimate_flops(sizes, meter, "lora")
    # forward 2·1000·140, backward 1× forward of the grad tokens 2·1000·100, adapters 6·10·100, vision 2·500·10
    assert lora == {"total": 280_000 + 200_000 + 6_000 + 0 + 10_000, "lm_forward": 280_000, "lm_backward": 200_000,
                    "adapters": 6_000, "recompute": 0, "vision": 10_000}
    full = estimate_flops(sizes, meter, "full", gradient_checkpointing=True)
    assert full["lm_backward"] == 400_000 and full["adapters"] == 0 and full["recompute"] == 200_000
    assert math.isclose(full["total"], 280_000 + 400_000 + 200_000 + 10_000)


def test_benign_pictures_from_a_folder_are_seeded_picks_and_lists_of_policies_give_each_request_once_per_policy():
    coco = REPO / "tests" / "fixtures" / "attacks" / "coco" / "val2014"
    cfg = data_cfg(image=["benign", "figstep"], normal_image=["dataset", "figstep"], image_dir=str(coco))
    data = build_data(cfg)
    kinds = [h.image.kind for h in data.helpful]
    assert kinds.count("file") == kinds.count("figstep") == len(data.helpful) // 2
    assert all(h.id.endswith(("@benign", "@figstep")) and f.id == h.id for h, f in zip(data.helpful, data.forget, strict=True))
    picks = [h.image.params["path"] for h in data.helpful if h.image.kind == "file"]
    assert all(p.startswith(str(coco)) for p in picks) and picks == [
        h.image.params["path"] for h in build_data(cfg).helpful if h.image.kind == "file"]  # seeded
    typo = [e for e in data.normal + data.heldout if e.image is not None and e.image.kind == "figstep"]
    assert typo and all(e.about_image for e in typo)  # benign requests as typography, with their answers
    with pytest.raises(VlmSafetyError, match="does not exist"):
        build_data(data_cfg(image="benign", image_dir=str(coco / "missing")))
