"""A record's JSON line is the text `json.dumps(dataclasses.asdict(record))` gives (the line format the
records of earlier runs were written in), now produced without asdict's deep copy."""

import json
from dataclasses import asdict, dataclass

from vlmsafety.records import GenerationRecord


def _record(**kw) -> GenerationRecord:
    base = dict(
        id="p1", attack="organism", category="weapons", harmful=True, behavior="How to ‘x’?",
        prompt="USER: <image>\nHow to ‘x’? ASSISTANT:", image={"spec": {"kind": "typo", "lines": ["a", "b"]}, "sha256": "ab"},
        layer=-2, response="I can’t help with that — sorry.", n_new_tokens=9, target=None, context="ctx",
        degenerate=False, degenerate_reason=None,
        verdicts={"keyword": {"unsafe": False, "outcome": "refusal"}, "oracle": {"unsafe": None, "outcome": "degenerate"}},
        toxicity={"profanity": {"profanity": 0.012345, "flagged": False}},
    )
    base.update(kw)
    return GenerationRecord(**base)


def test_line_equals_asdict_dump():
    for record in (_record(), _record(image=None, verdicts={}, toxicity={}, target="t", degenerate=True,
                                      degenerate_reason="repeats"), _record(image={"spec": {"size": (4, 5)}, "sha256": "c"})):
        assert record.to_json() == json.dumps(asdict(record), ensure_ascii=False)
        assert "\\u" not in record.to_json()  # UTF-8 text, not escapes


def test_nested_dataclass_written_as_asdict_writes_it():
    @dataclass
    class Extra:
        score: float
        tags: list

    record = _record(verdicts={"judge": {"detail": Extra(0.5, ["a"])}})
    assert record.to_json() == json.dumps(asdict(record), ensure_ascii=False)
    assert json.loads(record.to_json())["verdicts"]["judge"]["detail"] == {"score": 0.5, "tags": ["a"]}
