"""The Perspective client against a fake server on 127.0.0.1: retries, QPS, truncation, cache, secrets."""

import logging

import pytest
from fake_perspective import FakePerspective, expected_score

from vlmsafety.errors import VlmSafetyError
from vlmsafety.toxicity import build_scorer, perspective

KEY = "test-key-DO-NOT-LEAK-7f3a9c"
QPS = 20.0
LONG = "a" + "é" * 2000  # 4001 bytes; byte 3000 is the first half of a 2-byte character


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMSAFETY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PERSPECTIVE_API_KEY", KEY)
    perspective._LIMITERS.clear()
    return tmp_path / "cache"


def _scorer(endpoint, **kw):
    cfg = {
        "type": "perspective", "endpoint": endpoint, "qps": QPS, "timeout_s": 0.3, "max_attempts": 4,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.05, **kw,
    }
    return build_scorer("perspective", cfg)


def _check_rate(server: FakePerspective, qps: float) -> None:
    """Request arrivals never exceed `qps`: minimum spacing and overall rate, with margins for the server
    thread's scheduling jitter on a loaded machine (a client without rate limiting sends its requests
    milliseconds apart, far below either bound)."""
    times = sorted(r["t"] for r in server.requests)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5 / qps, f"two requests {min(gaps):.4f}s apart at qps={qps}"
    assert (len(times) - 1) / (times[-1] - times[0]) <= 1.1 * qps


def test_flaky_server_every_item_scored_or_unscored_within_qps(cache, caplog):
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and our retries all log: none may show the key
    texts = [
        "You are wonderful.", "[429x2] first answers are 429", "[500x2] a 500 then fine", "[slowx1] too slow once",
        "[badjsonx2] broken JSON twice", "[always500] never works", "[bad400] refused", "", "You are wonderful.", LONG,
    ]
    with FakePerspective(KEY) as server:
        results = _scorer(server.endpoint).score(texts)
    sent = LONG.encode()[:3000].decode("utf-8", errors="ignore")
    assert len(sent.encode()) == 2999  # the half character is dropped, not split
    for text, res in zip(texts, results, strict=True):
        if "[always500]" in text:
            assert res == {"TOXICITY": None, "error": "HTTP 500 after 4 attempts"}
        elif "[bad400]" in text:
            assert res["TOXICITY"] is None and res["error"].startswith("HTTP 400: Attribute TOXICITY")
        elif not text:
            assert res == {"TOXICITY": None, "error": "empty text"}
        elif text is LONG:
            assert res == {"TOXICITY": expected_score(sent, "TOXICITY"), "truncated": True}
        else:
            assert res == {"TOXICITY": expected_score(text, "TOXICITY")}  # never 0 for a failure, never missing
    seen = server.attempts
    assert seen["[429x2] first answers are 429"] == 3 and seen["[500x2] a 500 then fine"] == 3
    assert seen["[slowx1] too slow once"] == 2 and seen["[badjsonx2] broken JSON twice"] == 3
    assert seen["[always500] never works"] == 4 and seen["[bad400] refused"] == 1  # capped; 400 not retried
    assert seen["You are wonderful."] == 1 and "" not in seen  # duplicates once, empty never sent
    assert seen[sent] == 1 and all(len(r["raw"]) < 3300 for r in server.requests)
    _check_rate(server, QPS)
    for r in server.requests:
        assert r["headers"]["X-Goog-Api-Key"] == KEY and KEY not in r["path"]  # header, never the URL
        assert r["headers"]["Content-Type"] == "application/json"
    assert KEY not in caplog.text
    assert "retry" in caplog.text  # the retries were logged (without the key)


def test_second_run_sends_no_request(cache):
    texts = ["[429x1] hello there", "[badjsonx1] good morning", "[slowx1] fine weather", LONG, "hello", "hello"]
    with FakePerspective(KEY) as server:
        first = _scorer(server.endpoint).score(texts)
        n = len(server.requests)
        second = _scorer(server.endpoint).score(texts)  # a new scorer: only the disk cache carries over
        assert len(server.requests) == n and n == 8  # 5 distinct texts + 3 retries, then nothing
        other_attributes = _scorer(server.endpoint, attributes=["TOXICITY", "INSULT"]).score(texts[:1])
        assert len(server.requests) == n + 1  # the key includes the attributes asked for
    assert first == second
    assert set(other_attributes[0]) == {"TOXICITY", "INSULT"}
    files = list(cache.rglob("*.json"))
    assert len(files) == 6 and not any(KEY in f.read_text() for f in files)


def test_cache_is_per_endpoint(cache):
    texts = ["hello", "[429x1] good morning"]
    with FakePerspective(KEY) as first, FakePerspective(KEY) as second:
        assert first.endpoint != second.endpoint  # two servers, two ports
        _scorer(first.endpoint).score(texts)
        _scorer(second.endpoint).score(texts)  # the first server's scores are not this one's
        assert [r["text"] for r in second.requests] == [r["text"] for r in first.requests]
        again = len(first.requests), len(second.requests)
        _scorer(first.endpoint).score(texts)
        _scorer(second.endpoint).score(texts)
        assert (len(first.requests), len(second.requests)) == again  # each endpoint's scores are cached
    assert len(list(cache.rglob("*.json"))) == 4


def test_qps_holds_across_scorers_of_one_process(cache):
    with FakePerspective(KEY) as server:
        for batch in (["one", "two", "three"], ["four", "five"], ["six", "seven", "eight"]):
            _scorer(server.endpoint, qps=10.0).score(batch)  # e.g. three jobs of a sweep
    assert len(server.requests) == 8
    _check_rate(server, 10.0)


def test_missing_key_and_rejected_key_are_one_clear_line(cache, monkeypatch):
    monkeypatch.delenv("PERSPECTIVE_API_KEY")
    with pytest.raises(VlmSafetyError, match="environment variable PERSPECTIVE_API_KEY"):
        _scorer("http://127.0.0.1:9/none")
    with pytest.raises(VlmSafetyError, match="never from configs"):
        build_scorer("perspective", {"type": "perspective", "api_key": "x"})
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "wrong-key")
    with FakePerspective(KEY) as server, pytest.raises(VlmSafetyError, match=r"refused the key .*HTTP 403") as e:
        _scorer(server.endpoint).score(["hello"])
    assert "wrong-key" not in str(e.value)


def test_truncation_keeps_utf8_boundaries():
    assert perspective.truncate_utf8("abc", 3) == ("abc", False)
    assert perspective.truncate_utf8("abcé", 4) == ("abc", True)  # é is 2 bytes: dropped whole
    assert perspective.truncate_utf8("€€", 5) == ("€", True)  # 3-byte characters


def test_a_key_on_the_command_line_is_refused_before_hydra_writes_it():
    from vlmsafety.cli import check_no_secrets

    for arg in ("toxicity.perspective.api_key=abc", "+toxicity.perspective.apiKey=abc", "x.hf_token=abc"):
        with pytest.raises(VlmSafetyError, match="secrets come from environment variables only"):
            check_no_secrets([arg])
    check_no_secrets(["max_new_tokens=5", "layer=3", "toxicity=[perspective]"])  # ordinary overrides pass


def test_cache_writes_are_atomic_under_concurrent_writers(tmp_path):
    import json
    import threading

    cache = perspective.ScoreCache(tmp_path)
    key = cache.key("http://127.0.0.1/v1alpha1/comments:analyze", "same text", ["TOXICITY"], ["en"])
    threads = [
        threading.Thread(target=lambda v=v: [cache.put(key, {"TOXICITY": v}) for _ in range(20)]) for v in (0.25, 0.75)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert files == [cache.path(key)]  # no temp file left behind
    assert json.loads(files[0].read_text())["scores"]["TOXICITY"] in (0.25, 0.75)  # one whole write, never a mix


def test_the_docs_name_every_part_of_the_cache_key():
    """docs/judges.md and the module docstring list what the cache key depends on: each part, and only those."""
    import re

    from conftest import REPO

    base = {"endpoint": "https://a.example/analyze", "text": "hello", "attributes": ["TOXICITY"], "languages": ["en"]}
    other = {"endpoint": "https://b.example/analyze", "text": "hello!", "attributes": ["INSULT"], "languages": ["de"]}
    key = perspective.ScoreCache.key
    assert [k for k, v in other.items() if key(**{**base, k: v}) != key(**base)] == list(other)
    assert key(**{**base, "attributes": ["TOXICITY", "INSULT"]}) == key(**{**base, "attributes": ["INSULT", "TOXICITY"]})
    written = "endpoint, sha256 of the text sent, attributes, languages"
    for text in ((REPO / "docs" / "judges.md").read_text(encoding="utf-8"), perspective.__doc__):
        assert re.findall(r"one (?:JSON )?file per \(([^)]*)\)", " ".join(text.split())) == [written]
