"""Sweep cost: every layer of the default model in one process vs one process per layer.

Each variant runs `python run.py ...` exactly as a user would, in a subprocess, and is timed from
spawn to exit; the jobs' own phase timings come from their metrics.json.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("load", "judge_load", "encode", "generate", "judge", "toxicity")


@dataclass
class SweepRun:
    """One way of running the sweep: wall seconds and the jobs' summed phase timings (s)."""

    name: str
    command: str
    wall_s: float
    processes: int
    jobs: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # summed over jobs; "total" = sum of job totals
    measured: int | None = None  # naive only: processes actually run when the time budget cut it short

    @property
    def decode_s(self) -> float:
        return self.phases.get("generate", 0.0)

    def outside_jobs(self, startup_s: float) -> float:
        """Wall seconds neither in start-up nor inside a job: Hydra's per-job work, the summary, the rest."""
        return self.wall_s - self.phases.get("total", 0.0) - startup_s

    @property
    def overhead_share(self) -> float:
        """Share of wall time not spent in LLM decoding (start-up, Hydra, loading, encoding, judging, writing)."""
        return (self.wall_s - self.decode_s) / self.wall_s


def _run(args: list[str], cwd: Path = REPO) -> float:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
    return wall


def _phases(folder: Path) -> tuple[int, dict[str, float]]:
    """Number of job records under `folder` and their summed timings; "between_jobs": the seconds from each
    job's end (`finished_at`) to the next one's start (`started_at`) in one process: Hydra's per-job work
    (snapshot, logging) and the runner's bookkeeping around the job."""
    total: dict[str, float] = {}
    spans = []
    files = sorted(folder.rglob("metrics.json"))
    for f in files:
        m = json.loads(f.read_text())
        if m.get("status") != "complete":
            raise RuntimeError(f"{f} is not complete: {m.get('error')}")
        for k, v in m["timings_s"].items():
            total[k] = total.get(k, 0.0) + v
        spans.append((dt.datetime.fromisoformat(m["started_at"]), dt.datetime.fromisoformat(m["finished_at"])))
    spans.sort()
    total["between_jobs"] = sum(max(0.0, (b[0] - a[1]).total_seconds()) for a, b in zip(spans, spans[1:], strict=False))
    return len(files), total


def multirun(layers: list[int], work: Path, extra: list[str], shared: bool = True, attempt: int = 0) -> SweepRun:
    """`python run.py -m layer=a,b,...`: every job in one process (the project's launcher), layers decoded in
    shared batches, or each on its own (`shared=False`: `layer_batching.enabled=false`). Each `attempt` writes a
    fresh sweep folder (a second run into the same one would find its jobs complete)."""
    out = work / (("multirun" if shared else "multirun_alone") + (f"_{attempt}" if attempt else ""))
    switch = [] if shared else ["layer_batching.enabled=false"]
    wall = _run(["run.py", "-m", "layer=" + ",".join(map(str, layers)), f"hydra.sweep.dir={out}", *extra, *switch])
    n, phases = _phases(out)
    name = "one process, `-m layer=...`" + ("" if shared else ", layers decoded apart")
    return SweepRun(name, f"run.py -m layer=range(0,{len(layers)}) {' '.join(switch)}".strip(), wall, 1, n, phases)


def layers_job(layers: list[int], work: Path, extra: list[str]) -> SweepRun:
    """`python run.py layers=[...]`: one Hydra job that runs every layer (one config composition)."""
    out = work / "layers"
    wall = _run(["run.py", "layers=[" + ",".join(map(str, layers)) + "]", f"hydra.run.dir={out}", *extra])
    n, phases = _phases(out)
    return SweepRun("one process, one job `layers=[...]`", f"run.py layers=[0,...,{layers[-1]}]", wall, 1, n, phases)


def naive(layers: list[int], work: Path, extra: list[str], progress=None, deadline: float | None = None) -> SweepRun:
    """`python run.py layer=L` once per layer: every process imports, loads the model, encodes the images.

    deadline (time.monotonic()): past it, after at least 5 processes, the remaining layers are not run
    and the totals are extrapolated from the mean of the measured ones (`measured` says how many).
    """
    wall = 0.0
    for k, layer in enumerate(layers):
        if deadline is not None and k >= 5 and time.monotonic() > deadline:
            break
        wall += _run(["run.py", f"layer={layer}", f"hydra.run.dir={work / 'naive' / str(layer)}", *extra])
        if progress:
            progress(k + 1, len(layers))
    n, phases = _phases(work / "naive")
    scale = len(layers) / n
    return SweepRun(
        "naive: one process per layer", "run.py layer=L, once per layer", wall * scale, len(layers), len(layers),
        {k: v * scale for k, v in phases.items()}, measured=None if n == len(layers) else n,
    )


IMPORTS = "import hydra, vlmsafety.runner, vlmsafety.tasks.eval, vlmsafety.tasks.score, vlmsafety.report"


def import_seconds(fast_exit: bool = True, repeats: int = 2) -> float:
    """Wall time of a process that only imports what `python run.py` imports and exits (its fixed cost):
    through `vlmsafety.cli.fast_exit` as run.py does, or through the interpreter's full teardown."""
    code = IMPORTS + ("; from vlmsafety.cli import fast_exit; fast_exit(0)" if fast_exit else "")
    return min(_run(["-c", code]) for _ in range(repeats))


# What must stay fast without torch: help, the composed config, a config error (one line, exit 2).
STARTUP_COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "run.py --help": ["run.py", "--help"],
    "run.py --cfg job": ["run.py", "--cfg", "job"],
    "config error (run.py model=nope)": ["run.py", "model=nope"],
    "config error (run.py no_such_key=1)": ["run.py", "no_such_key=1"],
    # not torch-free (docs/PERFORMANCE.md section 4 says why); measured so the page shows what it costs
    "run.py task=inspect model=llava15_7b": [
        "run.py", "task=inspect", "model=llava15_7b", f"hydra.run.dir={Path(tempfile.gettempdir()) / 'vlmsafety-bench-inspect'}",
    ],
}


def startup_seconds(repeats: int = 3) -> dict[str, float]:
    """Best-of-`repeats` wall time of each STARTUP_COMMANDS entry (spawn to exit), whatever its exit status."""
    out = {}
    for name, args in STARTUP_COMMANDS.items():
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
            best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


def imports_torch(args: list[str]) -> bool:
    """Whether `python ARGS` imports torch (from `-X importtime`)."""
    p = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True)
    # the module's name is the last column, indented by its import depth (torch imported by another module too)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in p.stderr.splitlines() if line.startswith("import time:"))
