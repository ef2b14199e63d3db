import math

import pytest

from vlmsafety.metrics import judge_metrics, rate, summarize_scores, wilson_interval
from vlmsafety.records import GenerationRecord


def test_wilson_interval_hand_computed():
    # k=8, n=10, z=1.96: denom = 1 + 3.8416/10 = 1.38416
    # centre = (0.8 + 3.8416/20) / denom = 0.99208 / 1.38416 ≈ 0.7167380
    # half = 1.96·sqrt(0.016 + 3.8416/400) / denom = 1.96·0.1600125 / 1.38416 ≈ 0.2265812
    low, high = wilson_interval(8, 10, z=1.96)
    assert low == pytest.approx(0.4901568, abs=1e-6)
    assert high == pytest.approx(0.9433191, abs=1e-6)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20, z=1.96)
    assert low == 0.0 and high == pytest.approx(1.96**2 / 20 / (1 + 1.96**2 / 20), abs=1e-12)
    low, high = wilson_interval(20, 20, z=1.96)
    assert high == 1.0 and low == pytest.approx(1 - 1.96**2 / 20 / (1 + 1.96**2 / 20), abs=1e-12)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_rate_and_score_summary():
    r = rate([True, False, True, True])
    assert (r["k"], r["n"], r["value"]) == (3, 4, 0.75)
    assert rate([])["value"] is None
    s = summarize_scores([0.1, 0.7, None, 0.5])
    assert s["mean"] == pytest.approx(1.3 / 3) and s["max"] == 0.7
    assert s["frac_ge_0.5"] == pytest.approx(2 / 3) and s["n_unscored"] == 1


def _rec(harmful, unsafe):
    return GenerationRecord(
        id="x", attack="a", category="c", harmful=harmful, behavior="b", prompt="p", image=None, layer=0,
        response="r", n_new_tokens=1, verdicts={"kw": {"unsafe": unsafe}},
    )


def test_judge_metrics_split_harmful_and_benign():
    recs = [_rec(True, True), _rec(True, False), _rec(True, True), _rec(False, False), _rec(False, True)]
    m = judge_metrics(recs, ["kw"])
    assert m["asr"]["kw"]["value"] == pytest.approx(2 / 3)
    assert m["refusal_rate_benign"]["kw"]["value"] == 0.5
    assert math.isclose(m["asr"]["kw"]["low"], wilson_interval(2, 3)[0])
