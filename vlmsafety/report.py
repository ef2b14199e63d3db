"""Sweep summaries: `summary.csv`, `asr_vs_layer.png` and a rich table (DESIGN.md §5).

Written automatically when a multirun ends (`SweepSummaryCallback`) and again on demand with
`python run.py task=report sweep_dir=...`. summary.csv holds no volatile field (timings stay in each
job's metrics.json), so a resumed sweep's summary equals an uninterrupted one's.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vlmsafety import paper_aggregate
from vlmsafety.errors import VlmSafetyError
from vlmsafety.jobs import SWEEP_END, record_sweep_end, sweep_exit_status  # noqa: F401  (sweep_exit_status: where run.py found it)
from vlmsafety.records import (
    METRICS,
    SUPERSEDED,
    RecordError,
    read_metrics_file,
    write_bytes_atomic,
    write_text_atomic,
)
from vlmsafety.report_html import write_report_html
from vlmsafety.report_tables import agreement_table, judges_in, reference_table, summary_table
from vlmsafety.ui import console

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
ASR_PNG = "asr_vs_layer.png"


UNREADABLE = "unreadable"  # status of a job whose metrics.json cannot be read
_COUNTS = ("layer", "default_layer", "n", "n_harmful", "n_benign", "rows_skipped")


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders under `sweep_dir`: every folder (at any depth) that holds a metrics.json and is not
    inside another such folder (an unlearn job keeps its evaluations' own metrics.json in eval/)."""
    found = {p.parent for p in sweep_dir.rglob(METRICS) if not superseded(p.parent, sweep_dir)}
    folders = sorted(found, key=lambda p: len(p.parts))
    jobs: list[Path] = []
    for folder in folders:
        if not any(job in folder.parents for job in jobs):
            jobs.append(folder)
    return sorted(jobs, key=natural_key)


def superseded(folder: Path, root: Path) -> bool:
    """Whether `folder` holds records a changed config moved aside (jobs.SUPERSEDED), not a job of its own."""
    return SUPERSEDED in folder.relative_to(root).parts


def collect(sweep_dir: Path, jobs: list[Path] | None = None) -> pd.DataFrame:
    """One row per job (default: every job folder under `sweep_dir`), flattened from its metrics.json."""
    rows = [_row(job, sweep_dir) for job in (find_jobs(sweep_dir) if jobs is None else jobs)]
    df = pd.DataFrame(rows)
    for col in [c for c in df.columns if c in _COUNTS or c.startswith("invalid_")]:
        df[col] = df[col].astype("Int64")  # whole numbers stay whole beside a failed job's blanks
    if not df.empty:
        df = df.sort_values(["model", "attack", "unlearn", "layer", "job"], kind="stable").reset_index(drop=True)
    return df


def _row(job: Path, sweep_dir: Path) -> dict[str, Any]:
    try:
        m = read_metrics_file(job / METRICS)
    except RecordError as e:  # one broken job is named in the summary; the others are still reported
        return {"job": str(job.relative_to(sweep_dir)), "status": UNREADABLE, "task": "eval", "model": "?", "attack": "?",
                "unlearn": "?", "error": str(e)}
    row: dict[str, Any] = {
        "job": str(job.relative_to(sweep_dir)),
        "status": m.get("status"),
        "task": m.get("task", "eval"),
        "model": m.get("model"),
        "attack": m.get("attack"),
        "unlearn": m.get("unlearn"),
        # a failed job never resolved its layer: show the one it was asked for
        "layer": m.get("layer") if m.get("layer") is not None else _int_or_none(m.get("layer_requested")),
        "default_layer": m.get("default_layer"),
        "n": m.get("n"),
        "n_harmful": m.get("n_harmful"),
        "n_benign": m.get("n_benign"),
        "rows_skipped": m.get("attack_rows_skipped"),
    }
    degenerate = (m.get("degenerate") or {}).get("harmful")
    if degenerate is not None:
        row["degenerate_rate"] = degenerate["value"]
    for judge, r in (m.get("asr") or {}).items():
        row[f"asr_{judge}"] = r["value"]
        row[f"asr_{judge}_low"] = r["low"]
        row[f"asr_{judge}_high"] = r["high"]
        if "n_invalid" in r:
            row[f"invalid_{judge}"] = r["n_invalid"]
    for judge, r in (m.get("asr_non_degenerate") or {}).items():
        row[f"nondegen_asr_{judge}"] = r["value"]
    for judge, r in (m.get("refusal_rate_benign") or {}).items():
        row[f"benign_refusal_{judge}"] = r["value"]
    for pair, a in (m.get("agreement") or {}).items():
        key = pair.replace(" vs ", "_vs_")
        row[f"agreement_{key}"] = a["agreement"]
        row[f"kappa_{key}"] = a["kappa"]
    for judge, kinds in (m.get("labels") or {}).items():
        for kind, shares in kinds.items():
            for label, r in shares.items():
                row[f"label_{judge}_{kind}_{label}"] = r["value"]
    for judge, v in (m.get("vs_reference") or {}).items():
        row["reference_judge"] = v["reference"]
        row[f"fpr_{judge}"] = v["false_positive_rate"]["value"]
        row[f"fnr_{judge}"] = v["false_negative_rate"]["value"]
    for category, c in (m.get("by_category") or {}).items():
        row[f"cat_{category}_n_harmful"] = c["n_harmful"]
        for judge, value in c["unsafe"].items():
            row[f"cat_{category}_unsafe_{judge}"] = value
        for judge, shares in c["labels"].items():
            for label, value in shares.items():
                row[f"cat_{category}_{label}_{judge}"] = value
    for scorer, attrs in (m.get("toxicity") or {}).items():
        for attr, s in attrs.items():
            row[f"tox_{scorer}_{attr}_mean"] = s.get("mean")
            row[f"tox_{scorer}_{attr}_frac_ge_0.5"] = s.get("frac_ge_0.5")
    row["error"] = m.get("error")
    return row


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def incomplete(df: pd.DataFrame) -> pd.DataFrame:
    """The jobs of a summary that are not complete (failed, or still `running`: killed or in progress)."""
    return df[df["status"] != "complete"]


def failure_groups(bad: pd.DataFrame) -> list[tuple[tuple[str, str], list[str]]]:
    """The incomplete jobs grouped by (status, error), in order of first appearance.

    A missing judge checkpoint or API key fails every job of a sweep alike: one line says it once.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for _, r in bad.iterrows():
        error = r["error"] if isinstance(r.get("error"), str) else "(no error recorded: killed or still running)"
        groups.setdefault((str(r["status"]), error), []).append(str(r["job"]))
    return list(groups.items())


def job_list(jobs: list[str]) -> str:
    """`3`, `0, 1, 2` or `0, 1 … 24 (25 jobs)`."""
    if len(jobs) <= 4:
        return ", ".join(jobs)
    return f"{jobs[0]}, {jobs[1]} … {jobs[-1]} ({len(jobs)} jobs)"


def write_summary(sweep_dir: str | Path, show: bool = True) -> dict[str, Path]:
    """Write summary.csv and asr_vs_layer.png into `sweep_dir`; print the table when `show`.

    The summary covers the jobs of the sweep run last in the folder (`sweep_jobs`); what else is
    there is named in a warning. Sets the exit status: 1 when a covered job is not complete."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise VlmSafetyError(f"sweep_dir {sweep_dir} does not exist; pass the folder of a finished sweep")
    jobs, others = sweep_jobs(sweep_dir)
    if others:
        names = ", ".join(str(j.relative_to(sweep_dir)) for j in others[:8]) + (", ..." if len(others) > 8 else "")
        log.warning(
            "%s also holds %d job folder(s) that are not jobs of the sweep run last there (an earlier run, or another "
            "config); left out of the summary, their records kept: %s", sweep_dir, len(others), names,
        )
    df = collect(sweep_dir, jobs)
    if df.empty:
        raise VlmSafetyError(f"no job folder with a {METRICS} under {sweep_dir}; is this a sweep folder?")
    record_sweep_end(len(incomplete(df)))
    csv_path = sweep_dir / SUMMARY_CSV
    write_text_atomic(csv_path, df.to_csv(index=False))
    paths = {"csv": csv_path}
    evals = df[df["task"] != "unlearn"]
    png = plot_asr_vs_layer(evals) if not evals.empty else None
    if png is not None:
        paths["png"] = sweep_dir / ASR_PNG
        write_bytes_atomic(paths["png"], png)
    tables = [summary_table(evals), reference_table(evals), agreement_table(evals)] if not evals.empty else []
    tables.append(paper_aggregate.aggregate_table(sweep_dir, evals))  # a paper preset's layer-group means
    # complete ones: a failed or killed unlearn job has no results (it is listed with the incomplete jobs below)
    unlearn_jobs = [sweep_dir / j for j in df.loc[(df["task"] == "unlearn") & (df["status"] == "complete"), "job"]]
    if unlearn_jobs:
        from vlmsafety.unlearn import summary as unlearn_summary

        results = unlearn_summary.result_rows(sweep_dir, unlearn_jobs)
        costs = unlearn_summary.cost_rows(sweep_dir, unlearn_jobs)
        paths["unlearn_csv"] = sweep_dir / unlearn_summary.UNLEARN_CSV
        paths["cost_csv"] = sweep_dir / unlearn_summary.COST_CSV
        write_text_atomic(paths["unlearn_csv"], results.to_csv(index=False))
        write_text_atomic(paths["cost_csv"], costs.to_csv(index=False))
        layer_png = unlearn_summary.layer_plot(results) if not results.empty else None
        if layer_png is not None:  # jobs evaluated at several vision layers: ASR by layer, before and after
            paths["unlearn_png"] = sweep_dir / unlearn_summary.LAYER_PNG
            write_bytes_atomic(paths["unlearn_png"], layer_png)
        if not results.empty:
            tables.extend(unlearn_summary.results_tables(results))
        tables.append(unlearn_summary.cost_table(costs))
    paths["html"] = write_report_html(sweep_dir, df)
    if show:
        for table in tables:
            if table is not None:
                console.print(table)
        bad = incomplete(df)
        if len(bad):
            console.print(f"[bold red]{len(bad)} of {len(df)} jobs did not complete:[/]")
            for (status, error), jobs in failure_groups(bad):
                console.print(f"  {job_list(jobs)} ({status}): {error}", markup=False, highlight=False, soft_wrap=True)
        for kind, path in paths.items():
            console.print(f"{kind}: {path}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"open the report: {paths['html'].resolve().as_uri()}", markup=False, highlight=False, soft_wrap=True)
    return paths


def plot_asr_vs_layer(df: pd.DataFrame) -> bytes | None:
    """PNG bytes: ASR vs layer, one line (with its 95 % band) per model × attack × judge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[(df["status"] == "complete") & df["layer"].notna()]
    judges = judges_in(ok)
    if ok.empty or not judges:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for (model, attack, unlearn), g in ok.groupby(["model", "attack", "unlearn"], sort=True):
        g = g.sort_values("layer")
        for j in judges:
            if g[f"asr_{j}"].isna().all():
                continue
            label = f"{model} · {attack} · {j}" + ("" if unlearn in (None, "none") else f" · {unlearn}")
            (line,) = ax.plot(g["layer"], g[f"asr_{j}"], marker="o", ms=3, label=label)
            ax.fill_between(g["layer"], g[f"asr_{j}_low"], g[f"asr_{j}_high"], color=line.get_color(), alpha=0.15)
            default = g["default_layer"].dropna()
            if len(default):
                ax.axvline(float(default.iloc[0]), color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("vision layer (blocks applied before the projector)")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("ASR vs vision layer (dotted: trained default layer)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


_last_sweep = SWEEP_END  # what the last summary found (kept in jobs.py, which run.py reads without pandas)


class SweepSummaryCallback(Callback):
    """Hydra callback: summarise the sweep folder when a multirun ends, and note its incomplete jobs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_summary(sweep_dir, show=True)
        except VlmSafetyError as e:  # e.g. a sweep of task=report jobs has no job records
            log.error("%s", e)


def natural_key(p: Path) -> list[Any]:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def sweep_jobs(sweep_dir: Path) -> tuple[list[Path], list[Path]]:
    """(jobs the summary covers: those of the sweep run last in the folder, other job folders found there)."""
    from vlmsafety.sweep_jobs import split_by_last_run

    return split_by_last_run(sweep_dir, find_jobs(sweep_dir))
