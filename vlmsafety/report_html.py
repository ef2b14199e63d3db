"""`report.html`: a sweep's self-contained report (DESIGN.md §5), written beside summary.csv.

One page, readable offline: per model × attack set the ASR-by-layer figure of each judge (PNG data
URIs), a category × layer heatmap, and the response browser (`report_browser`); before / after
figures and browsers for unlearning jobs; every summary CSV as a sortable table; the run's provenance.
Jinja2 lays out the page (`templates/report.html.j2`, autoescaped); the page's script and style are
bundled from the same folder. Nothing in it is fetched from anywhere.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vlmsafety import report_plots
from vlmsafety.errors import VlmSafetyError
from vlmsafety.records import METRICS, GenerationRecord, read_json, write_text_atomic
from vlmsafety.report_browser import MAX_CELLS, BrowserView, Column, Thumbnails, build_view, load_columns
from vlmsafety.report_tables import judges_in, layer_cell, reference_judge

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
_SETTINGS = ("seed", "limit", "max_new_tokens", "do_sample", "temperature", "top_p", "batch_size", "device", "threads")


@dataclass
class Figure:
    caption: str
    data_uri: str


@dataclass
class Heatmap:
    judge: str
    layers: list[str]
    rows: list[tuple[str, list[tuple[str, str, str, str]]]]  # (category, [(shown value, full value, colour, ink)])


@dataclass
class Section:
    """One model × attack set (eval jobs) or one unlearning sweep: figures, heatmaps, browsers."""

    title: str
    anchor: str
    figures: list[Figure] = field(default_factory=list)
    heatmaps: list[Heatmap] = field(default_factory=list)
    browsers: list[BrowserView] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # records that could not be read (shown in the page)


@dataclass
class CsvTable:
    name: str
    columns: list[str]
    rows: list[list[str]]


def write_report_html(sweep_dir: Path, df: pd.DataFrame) -> Path:
    """Write `sweep_dir/report.html` for the summary rows `df` (summary.csv's, already written); return its path."""
    path = Path(sweep_dir) / REPORT_HTML
    write_text_atomic(path, render_report(Path(sweep_dir), df))
    return path


def render_report(sweep_dir: Path, df: pd.DataFrame) -> str:
    """The page's HTML text (see the module docstring)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("vlmsafety", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True),
        trim_blocks=True, lstrip_blocks=True,
    )
    thumbnails = Thumbnails()
    evals = df[(df["task"] != "unlearn") & (df["status"] == "complete") & df["layer"].notna()]
    sections = [_eval_section(sweep_dir, g, key, thumbnails) for key, g in evals.groupby(["model", "attack", "unlearn"], sort=True, dropna=False)]
    unlearn_jobs = df[(df["task"] == "unlearn") & (df["status"] == "complete")]
    if not unlearn_jobs.empty:
        sections.append(_unlearn_section(sweep_dir, unlearn_jobs, thumbnails))
    tables = [_csv_table(sweep_dir / name) for name in ("summary.csv", "unlearn_summary.csv", "unlearn_cost.csv")
              if (sweep_dir / name).exists()]
    incomplete = [(str(r["job"]), str(r["status"]), r["error"] if isinstance(r.get("error"), str) else "")
                  for _, r in df[df["status"] != "complete"].iterrows()]
    return env.get_template("report.html.j2").render(
        title=f"vlmsafety report — {sweep_dir.name}",
        sweep_dir=str(sweep_dir),
        sections=sections,
        tables=tables,
        incomplete=incomplete,
        provenance=provenance(sweep_dir, df),
        outcomes=("refusal", "compliance", "degenerate"),
        max_cells=MAX_CELLS,
    )


def _eval_section(sweep_dir: Path, g: pd.DataFrame, key: tuple, thumbnails: Thumbnails) -> Section:
    model, attack, unlearn = key
    title = f"{model} · {attack}" + ("" if unlearn in (None, "none") or pd.isna(unlearn) else f" · unlearn={unlearn}")
    g = g.sort_values(["layer", "job"], kind="stable")
    section = Section(title=title, anchor=_anchor(title))
    columns = [Column(key=str(r["job"]), label=layer_cell(r), folder=sweep_dir / str(r["job"])) for _, r in g.iterrows()]
    records = _read(columns, section)
    ref = reference_judge(g)
    layers = [int(v) for v in g["layer"]]
    for judge in judges_in(g):
        png = report_plots.asr_by_layer(g, judge, _category_curves(records, layers, judge), ref, title)
        if png is not None:
            section.figures.append(Figure(caption=f"ASR by layer — {judge}", data_uri=_data_uri(png)))
        heat = _heatmap(g, judge)
        if heat is not None:
            section.heatmaps.append(heat)
    section.browsers.append(build_view(title, columns, records, thumbnails, reference=ref))
    return section


def _read(columns: list[Column], section: Section) -> list[dict[str, GenerationRecord]]:
    """The columns' records; a job whose generations.jsonl cannot be read gets an empty column, and the page
    and the console say which (the summary tables and figures come from metrics.json and stay whole)."""
    out = []
    for col in columns:
        try:
            out += load_columns([col])
        except (OSError, ValueError, TypeError, VlmSafetyError) as e:
            problem = f"{col.folder}: generations.jsonl cannot be read ({e}); its column of the response browser is empty"
            log.warning("report.html: %s", problem)
            section.problems.append(problem)
            out.append({})
    return out


def _category_curves(records: list[dict[str, GenerationRecord]], layers: list[int], judge: str) -> list[report_plots.CategoryCurve]:
    """Per harmful category: unsafe verdicts k of n harmful prompts per layer (the metrics' by_category rate)."""
    categories = list(dict.fromkeys(r.category for by_id in records for r in by_id.values() if r.harmful))
    if len(categories) < 2:  # one category's curve is the overall one
        return []
    curves = []
    for c in categories:
        ks, ns = [], []
        for by_id in records:
            rows = [r for r in by_id.values() if r.harmful and r.category == c and judge in r.verdicts]
            ks.append(sum(bool(r.verdicts[judge].get("unsafe")) for r in rows))
            ns.append(len(rows))
        curves.append(report_plots.CategoryCurve(category=c, layers=layers, k=ks, n=ns))
    return curves


def _heatmap(g: pd.DataFrame, judge: str) -> Heatmap | None:
    """Category × layer from summary.csv's `cat_<category>_unsafe_<judge>` columns (benign categories: share answered)."""
    import matplotlib

    suffix = f"_unsafe_{judge}"
    cats = [c[4 : -len(suffix)] for c in g.columns if c.startswith("cat_") and c.endswith(suffix)]
    if not cats:
        return None
    cmap = matplotlib.colormaps["Reds"]
    rows = []
    for c in cats:
        benign = f"cat_{c}_n_harmful" in g and bool((g[f"cat_{c}_n_harmful"].fillna(0) == 0).all())
        cells = []
        for v in g[f"cat_{c}{suffix}"]:
            if pd.isna(v):
                cells.append(("—", "", "transparent", "inherit"))
            else:
                r, gr, b, _ = (matplotlib.colormaps["Greens"] if benign else cmap)(0.08 + 0.8 * float(v))
                ink = "white" if float(v) > 0.55 else "black"  # dark cells need light digits
                cells.append((f"{float(v):.2f}", repr(float(v)), f"rgb({int(r * 255)},{int(gr * 255)},{int(b * 255)})", ink))
        rows.append((f"{c} (answered)" if benign else c, cells))
    return Heatmap(judge=judge, layers=[layer_cell(r) for _, r in g.iterrows()], rows=rows)


def _unlearn_section(sweep_dir: Path, jobs: pd.DataFrame, thumbnails: Thumbnails) -> Section:
    """Before / after bars per judge (from unlearn_summary.csv) and, per job and attack set, a browser whose
    columns are the phases × layers of the job's evaluations."""
    from vlmsafety.unlearn.results import EVAL_DIR, PHASES
    from vlmsafety.unlearn.summary import UNLEARN_CSV

    section = Section(title="Unlearning: before → after", anchor="unlearning")
    csv = sweep_dir / UNLEARN_CSV
    if csv.exists():
        rows = pd.read_csv(csv)
        judges = [c[4:-6] for c in rows.columns if c.startswith("asr_") and c.endswith("_after") and not c.startswith("asr_non_degenerate")]
        for judge in judges:
            png = report_plots.before_after(rows, judge)
            if png is not None:
                section.figures.append(Figure(caption=f"ASR before → after — {judge}", data_uri=_data_uri(png)))
    for model, model_jobs in jobs.groupby("model", sort=True):
        found = []  # (job row, its eval folder, its reference judge)
        for _, job in model_jobs.iterrows():
            job_dir = sweep_dir / str(job["job"])
            metrics = sorted((job_dir / EVAL_DIR).glob(f"*/*/layer_*/{METRICS}"))
            found.append((job, job_dir / EVAL_DIR, _first(read_json(m).get("reference_judge") for m in metrics)))
        attacks = sorted({p.name for _, evals, _ in found for phase in PHASES for p in (evals / phase).glob("*") if p.is_dir()})
        for attack in attacks:  # one browser per attack set: each recipe's before and after columns side by side
            columns = []
            for job, evals, _ in found:
                for phase in PHASES:
                    folders = sorted((evals / phase / attack).glob("layer_*"), key=lambda p: int(p.name[6:]))
                    columns += [Column(key=f"{job['job']}/{EVAL_DIR}/{phase}/{attack}/{f.name}",
                                       label=f"{job['unlearn']} · {phase} · L{f.name[6:]}", folder=f) for f in folders]
            reference = _first(ref for _, _, ref in found)
            section.browsers.append(build_view(f"{model} · {attack}", columns, _read(columns, section), thumbnails, reference=reference))
    section.browsers.sort(key=lambda b: not any(r.harmful for r in b.rows))  # attack sets before benign sets
    return section


def provenance(sweep_dir: Path, df: pd.DataFrame) -> dict[str, Any]:
    """What ran, where and at what cost: from the jobs' metrics.json (never the whole config: it may name
    paths a reader need not see, and a secret must never reach a file)."""
    metrics = []  # one per summary row ({} where metrics.json cannot be read: the summary lists that job too)
    for job in df["job"]:
        try:
            m = read_json(sweep_dir / str(job) / METRICS)
        except (OSError, ValueError):
            m = {}
        metrics.append((str(job), m if isinstance(m, dict) else {}))
    first = next((m for _, m in metrics if m.get("status") == "complete"), metrics[0][1] if metrics else {})
    cfg = first.get("config") or {}
    hours = [_hours(m.get("device_hours")) for _, m in metrics]
    gpu = [_hours(m.get("gpu_hours")) for _, m in metrics]
    facts = {
        "models": _distinct(m.get("model") for _, m in metrics),
        "attack sets": _distinct(f"{m.get('attack')} ({m.get('attack_source')})" if m.get("attack_source") else m.get("attack") for _, m in metrics),
        "judges": _distinct(j for _, m in metrics for j in ((m.get("config") or {}).get("judge") or {})),
        "toxicity scorers": _distinct(s for _, m in metrics for s in ((m.get("config") or {}).get("toxicity") or {})),
        "unlearning": _distinct(m.get("unlearn") for _, m in metrics),
        "settings": ", ".join(f"{k}={cfg.get(k)}" for k in _SETTINGS if k in cfg),
        "devices": _distinct(m.get("device") for _, m in metrics),
        "quantization": _distinct(m.get("quant") for _, m in metrics),
        "git commits": _distinct(m.get("git_commit") for _, m in metrics),
        "device hours (all jobs)": f"{sum(hours):.4f}",
        "GPU hours (all jobs)": f"{sum(gpu):.4f}",
        "jobs": f"{len(df)} ({int((df['status'] == 'complete').sum())} complete)",
    }
    versions = first.get("versions") or {}
    keys = [(job, str(m.get("job_key", "")), str(m.get("status", "")), layer_cell(r))
            for (job, m), (_, r) in zip(metrics, df.iterrows(), strict=True)]
    return {"facts": facts, "versions": versions, "job_keys": keys}


def _hours(v: Any) -> float:
    if isinstance(v, dict):  # an unlearn job: per phase, with the whole job under "total"
        v = v.get("total")
    return float(v) if isinstance(v, (int, float)) else 0.0


def _distinct(values: Iterable[Any]) -> str:
    seen = [str(v) for v in dict.fromkeys(values) if v not in (None, "", "none")]
    return ", ".join(seen) or "—"


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v), None)


def _csv_table(path: Path) -> CsvTable:
    """A summary CSV as text cells, exactly as the file spells them."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return CsvTable(name=path.name, columns=list(df.columns), rows=df.values.tolist())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _anchor(title: str) -> str:
    return "s-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")

