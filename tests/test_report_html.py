"""report.html of a sweep (issue 17): parses as HTML, one figure per judge, one browser row per prompt with one
cell per layer, no external URL, and the same numbers as summary.csv; the console gets one line per job."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console
from test_pipeline import run_cli

from vlmsafety.job_lines import job_line, swept_keys
from vlmsafety.ui import DETAIL, ConsoleHandler


class Page(HTMLParser):
    """The parts of report.html the tests read: figures, response rows and cells, the CSV tables, every URL."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: list[str] = []
        self.rows: list[dict] = []  # {"cat":..., "cells": [{"o":..., "text":...}]}
        self.csv: dict[str, list[list[str]]] = {}
        self.urls: list[str] = []
        self.stack: list[str] = []
        self._cell: dict | None = None
        self._csv: str | None = None
        self._csv_row: list[str] | None = None
        self._td: list[str] | None = None
        self._in_figure = False
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster", "data") and v]
        if tag not in ("img", "meta", "input", "br"):
            self.stack.append(tag)
        if tag == "figure" and "plot" in a.get("class", ""):
            self._in_figure = True
        elif tag == "img" and self._in_figure:
            self.figures.append(a.get("alt", ""))
        elif tag == "tr" and "prompt-row" in a.get("class", ""):
            self.rows.append({"cat": a["data-cat"], "harm": a["data-harm"], "cells": []})
        elif tag == "td" and "resp" in (a.get("class") or "").split():
            self._cell = {"o": a.get("data-o"), "class": a.get("class"), "text": ""}
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "table" and a.get("data-csv"):
            self._csv = a["data-csv"]
            self.csv[self._csv] = []
        elif tag == "tr" and self._csv:
            self._csv_row = []
            self.csv[self._csv].append(self._csv_row)
        elif tag in ("td", "th") and self._csv_row is not None:
            self._td = []

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag == "figure":
            self._in_figure = False
        elif tag == "td" and self._cell is not None:
            self._cell = None
        elif tag in ("td", "th") and self._td is not None and self._csv_row is not None:
            self._csv_row.append("".join(self._td))
            self._td = None
        elif tag == "table":
            self._csv = self._csv_row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._td is not None:
            self._td.append(data)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """The brief's small sweep: tiny_llava on the builtin set, keyword judge, 4 prompts, layers 0 and 23."""
    sweep = tmp_path_factory.mktemp("report") / "sweep"
    p = run_cli("-m", "model=tiny_llava", "attack=builtin", "judge=[keyword]", "limit=4", "max_new_tokens=4",
                "layer=0,23", "threads=1", f"hydra.sweep.dir={sweep}")
    assert p.returncode == 0, p.stderr[-3000:]
    return sweep, p


@pytest.mark.slow
def test_report_of_a_small_sweep(tiny_sweep):
    sweep, _ = tiny_sweep
    text = (sweep / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    assert text.startswith("<!DOCTYPE html>") and page.errors == [] and page.stack == []

    assert page.figures == ["ASR by layer — keyword"]  # one figure per judge
    jobs = [sweep / "0", sweep / "1"]
    records = [[json.loads(line) for line in (job / "generations.jsonl").read_text().splitlines()] for job in jobs]
    assert len(page.rows) == 4 and all(len(r["cells"]) == 2 for r in page.rows)  # one row per prompt, one cell per layer
    for i, row in enumerate(page.rows):  # each cell is that layer's response, coloured by its verdict's outcome
        for cell, recs in zip(row["cells"], records, strict=True):
            assert cell["text"] == recs[i]["response"]
            assert cell["o"] == recs[i]["verdicts"]["keyword"]["outcome"]
        assert row["cat"] == records[0][i]["category"]

    # every URL is a data URI or a link inside the page; no address anywhere
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), page.urls
    bare = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # base64 may spell "//x" by chance
    assert not re.search(r"https?:|//[a-z]", bare), "the report names an external address"

    # the summary table holds summary.csv as written, and the heatmap its per-category values
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert page.csv["summary.csv"] == rows
    header, values = rows[0], rows[1:]
    heat = re.search(r'<table class="heatmap">.*?<tbody>(.*?)</tbody>', text, re.S).group(1)
    cats = re.findall(r"<tr><th>([^<]*)</th>", heat)
    cells = [float(v) for v in re.findall(r'title="([^"]+)"', heat)]
    expected = [float(r[header.index(f"cat_{c.removesuffix(' (answered)')}_unsafe_keyword")]) for c in cats for r in values]
    assert cats and cells == expected


def test_a_browser_past_its_cell_budget_shows_the_first_prompts_and_says_so(tiny_sweep, monkeypatch):
    from vlmsafety import report_browser
    from vlmsafety.report import collect
    from vlmsafety.report_html import render_report

    monkeypatch.setattr(report_browser, "MAX_CELLS", 6)  # 2 layers: 3 of the 4 prompts
    text = render_report(tiny_sweep[0], collect(tiny_sweep[0]))
    page = Page()
    page.feed(text)
    assert len(page.rows) == 3 and "shows the first 3 of 4 prompts" in text


def test_a_job_whose_records_cannot_be_read_leaves_an_empty_column_and_says_so(tiny_sweep, tmp_path):
    import shutil

    from vlmsafety.report import collect
    from vlmsafety.report_html import render_report

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep[0], sweep)
    (sweep / "1" / "generations.jsonl").write_text('{"id": "torn')
    page = Page()
    page.feed(render_report(sweep, collect(sweep)))
    assert len(page.rows) == 4 and all([c["o"] for c in r["cells"]][1] == "" for r in page.rows)


@pytest.mark.slow
def test_sweep_console_says_one_line_per_job_and_ends_with_the_report(tiny_sweep):
    sweep, p = tiny_sweep
    lines = p.stderr.splitlines()
    job_lines = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d INFO #\d+ layer=", line)]
    assert [re.search(r"#\d+ layer=\d+", line).group() for line in job_lines] == ["#0 layer=0", "#1 layer=23"]
    assert not any(re.search(r"#\d+ : ", line) for line in lines)  # Hydra's own line per job is replaced by ours
    m = json.loads((sweep / "1" / "metrics.json").read_text())
    asr = m["asr"]["keyword"]
    assert f"keyword {asr['value']:.2f} [{asr['low']:.2f},{asr['high']:.2f}]" in job_lines[1]
    # the per-layer details are in the job's run.log, not on the console
    assert "attack builtin" in (sweep / "1" / "run.log").read_text() and not any("attack builtin" in ln for ln in lines)
    assert lines[-2:] == [f"html: {sweep / 'report.html'}", f"open the report: {(sweep / 'report.html').resolve().as_uri()}"]


def test_job_line_of_an_eval_a_skipped_and_a_failed_job():
    m = {"status": "complete", "task": "eval", "layer": 3, "asr": {"keyword": {"value": 0.375, "low": 0.3, "high": 0.47}},
         "degenerate": {"harmful": {"value": 0.01}}, "job_key": "abc", "finished_at": "2026-01-01T00:00:00.000+00:00"}
    assert job_line(3, ["layer=3"], m, 0.44) == "#3 layer=3 · keyword 0.38 [0.30,0.47] · degen. 0.01 · 0.4s"
    import datetime as dt

    later = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    assert job_line(3, ["layer=3"], m, 0.1, later) == "#3 layer=3 · skipping: already complete with job key abc"
    assert job_line(3, ["layer=3"], {"status": "failed", "error": "x"}, 0.1) is None  # its error line is printed already
    layers = {"0": {**m, "layer": 0, "asr": {"keyword": {"value": 0.5, "low": 0.1, "high": 0.9}}}, "3": m}
    assert job_line(None, [], layers, 1.0) == "ASR keyword by layer 0:0.50 3:0.38 · 1.0s"  # a layers=[...] job
    assert swept_keys(["layer=range(0,25)", "threads=1", "unlearn=textual,multimodal"]) == ["layer", "unlearn"]


def test_job_line_of_an_unlearn_job_evaluated_at_every_layer_names_one():
    def part(asr):
        return {"text": {"n_harmful": 2, "asr": {"organism_oracle": asr}}}

    rows = [{"attack": "organism_text", "layer": layer, "default_layer": 23, "reference_judge": "organism_oracle",
             "before": part(0.5), "after": part(0.25 if layer == 23 else 1.0), "collapse": []} for layer in range(25)]
    m = {"status": "complete", "task": "unlearn", "unlearn": "textual", "results": rows}
    assert job_line(0, ["unlearn=textual"], m, 2.0) == (
        "#0 unlearn=textual · organism_oracle ASR before→after at layer 23 (of 25 evaluated): "
        "organism_text/text 0.50→0.25 · 2.0s")


def test_console_lines_are_unwrapped_off_a_terminal_and_details_stay_in_the_file():
    out = io.StringIO()
    handler = ConsoleHandler(console=Console(file=out, width=40, force_terminal=False))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test_report_html.console")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        message = " ".join(["a long message"] * 10)
        logger.warning("%s", message)
        logger.info("only for run.log", extra=DETAIL)
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"\d\d:\d\d:\d\d WARNING (.*)", lines[0]).group(1) == message


def test_report_names_no_secret_config(tmp_path: Path):
    """Provenance lists chosen settings, never the resolved config (which may hold paths or keys)."""
    import pandas as pd

    from vlmsafety.report_html import provenance

    job = tmp_path / "0"
    job.mkdir()
    (job / "metrics.json").write_text(json.dumps({
        "status": "complete", "model": "m", "attack": "a", "device_hours": 0.5, "gpu_hours": 0.0, "job_key": "k",
        "config": {"seed": 0, "toxicity": {"perspective": {"api_key": "SECRET-123"}}, "judge": {"keyword": {}}},
    }))
    facts = provenance(tmp_path, pd.DataFrame([{"job": "0", "status": "complete", "layer": 1, "default_layer": 2}]))
    assert "SECRET-123" not in json.dumps(facts) and facts["facts"]["device hours (all jobs)"] == "0.5000"


def test_browser_cell_colour_and_disagreement_from_the_verdicts():
    from vlmsafety.records import GenerationRecord
    from vlmsafety.report_browser import Column, Thumbnails, build_view

    def rec(rid, harmful, verdicts):
        return GenerationRecord(id=rid, attack="a", category="c", harmful=harmful, behavior="b", prompt="p", image=None,
                                layer=0, response="r", n_new_tokens=1, verdicts=verdicts)

    another_request = {"keyword": {"unsafe": True, "outcome": "compliance"},
                       "oracle": {"unsafe": False, "label": "degenerate", "outcome": "refusal"}}
    refused = {"keyword": {"unsafe": False, "outcome": "refusal"}, "oracle": {"unsafe": False, "label": "refusal", "outcome": "refusal"}}
    records = [{"x": rec("x", True, another_request), "y": rec("y", False, another_request), "z": rec("z", True, refused)}]
    view = build_view("t", [Column("0", "0", Path("."))], records, Thumbnails(), reference="oracle")
    cells = {row.id: row.cells[0] for row in view.rows}
    assert view.judge == "oracle" and cells["x"].outcome == "degenerate" and cells["z"].outcome == "refusal"
    # judges that disagree on a harmful prompt mark the cell; on a benign prompt "unsafe" means "answered"
    assert cells["x"].disagree and not cells["y"].disagree and not cells["z"].disagree
