"""One console line per job of a run or sweep: its number, the swept values and its result.

A Hydra callback (conf/config.yaml `hydra.callbacks.job_lines`). The job's own details (per-layer and
per-phase results) go to its run.log only (`ui.DETAIL`); a failed job has already printed its error line,
so it gets no second one here.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("vlmsafety.jobs")


def swept_keys(overrides: Sequence[str]) -> list[str]:
    """The keys a multirun's command-line overrides sweep over (`layer=range(0,25)`, `unlearn=a,b`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # Hydra reports bad overrides itself; the job lines then show no swept values
        return []
    return [o.get_key_element() for o in parsed if o.is_sweep_override()]


def job_line(num: int | None, values: Sequence[str], result: Any, seconds: float, started: dt.datetime | None = None) -> str | None:
    """The line for one finished job (None: nothing to say, e.g. a failure already printed or a report task)."""
    if not isinstance(result, dict) or result.get("status") == "failed":
        return None
    head = " ".join(([f"#{num}"] if num is not None else []) + list(values))
    if result.get("status") == "complete":
        if _finished_before(result, started):
            return f"{head} · skipping: already complete with job key {result.get('job_key')}".lstrip(" ·")
        if result.get("task") == "unlearn":
            body = unlearn_summary(result, show_name=f"unlearn={result.get('unlearn')}" not in values)
        else:
            body = eval_summary(result, show_layer=f"layer={result.get('layer')}" not in values)
    elif result and all(isinstance(v, dict) and "layer" in v for v in result.values()):  # layers=[...]
        body = layers_summary(list(result.values()))
    else:
        return None
    return " · ".join(p for p in (head, body, f"{seconds:.1f}s") if p)


def eval_summary(m: dict[str, Any], show_layer: bool = True) -> str:
    """`layer 3 · keyword 0.38 [0.30,0.47] · organism_oracle 0.07 [0.03,0.12] · degen. 0.01`."""
    parts = [f"layer {m.get('layer')}"] if show_layer else []
    for judge, r in (m.get("asr") or {}).items():
        if r.get("value") is not None:
            invalid = f" ({r['n_invalid']} inv.)" if r.get("n_invalid") else ""
            parts.append(f"{judge} {r['value']:.2f} [{r['low']:.2f},{r['high']:.2f}]{invalid}")
    degenerate = ((m.get("degenerate") or {}).get("harmful") or {}).get("value")
    if degenerate:
        parts.append(f"degen. {degenerate:.2f}")
    return " · ".join(parts)


def layers_summary(ms: list[dict[str, Any]]) -> str:
    """A `layers=[...]` job: the first judge's ASR at each of its layers."""
    judge = next((j for m in ms for j in (m.get("asr") or {})), None)
    if judge is None:
        return f"{len(ms)} layers"
    cells = [f"{m.get('layer')}:{_num(m['asr'].get(judge, {}).get('value'))}" for m in ms]
    return f"ASR {judge} by layer " + " ".join(cells)


def unlearn_summary(m: dict[str, Any], show_name: bool = True) -> str:
    """`unlearn textual · organism_oracle ASR before→after: organism_text/text 0.00→0.00, ...`."""
    rows = m.get("results") or []
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    scope = ""
    if len(layers) > 1:  # one layer on the console (the trained default's if evaluated); the tables show all
        shown = next((r["layer"] for r in rows if r["layer"] == r.get("default_layer")), layers[0])
        rows = [r for r in rows if r["layer"] == shown]
        scope = f" at layer {shown} (of {len(layers)} evaluated)"
    judge = next((r.get("reference_judge") for r in rows if r.get("reference_judge")), None)
    parts = []
    for r in rows:
        for part in ("text", "image"):
            b, a = (r.get("before") or {}).get(part), (r.get("after") or {}).get(part)
            if not a or not a.get("n_harmful"):
                continue
            judge = judge or next(iter(a["asr"]), None)
            before = _num((b or {}).get("asr", {}).get(judge)) if b else "—"
            parts.append(f"{r['attack']}/{part} {before}→{_num(a['asr'].get(judge))}")
    collapse = sum(bool(r.get("collapse")) for r in rows)
    name = f"unlearn {m.get('unlearn')}" if show_name else ""
    text = " · ".join(p for p in (name, f"{judge} ASR before→after{scope}: " + ", ".join(parts) if parts else "") if p)
    return text + (f" · COLLAPSE in {collapse} row(s)" if collapse else "")


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:.2f}"


def _finished_before(m: dict[str, Any], started: dt.datetime | None) -> bool:
    """Whether a complete job's record predates this job's start (a resumed sweep skipped it)."""
    try:
        return started is not None and dt.datetime.fromisoformat(str(m.get("finished_at"))) < started
    except ValueError:
        return False


class JobLineCallback(Callback):
    """Logs `job_line` when each job ends (console and run.log)."""

    def __init__(self) -> None:
        self._swept: list[str] = []
        self._t0 = time.perf_counter()
        self._started: dt.datetime | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._swept = swept_keys(list(config.hydra.overrides.task))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        self._started = dt.datetime.now(dt.timezone.utc)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        overrides = list(getattr(job_return, "overrides", None) or [])
        values = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in self._swept]
        num = config.hydra.job.get("num") if self._swept else None
        result = getattr(job_return, "_return_value", None)
        line = job_line(num, values, result, time.perf_counter() - self._t0, self._started)
        if line:
            log.info("%s", line)
