"""Time the organism's speed goals on this machine, with the load average beside each figure.

    .venv/bin/python benchmarks/organism.py sweep   # `make run` (25 layers × attack=organism): < 1 min
    .venv/bin/python benchmarks/organism.py train   # `make organism` without writing the shipped folder, < 10 min
    .venv/bin/python benchmarks/organism.py probe   # `run.py task=probe threads=1` (25 layers, no generation): < 1 min

The machine may be shared: report the run with the lowest load average (1-minute value, sampled
before and after), not the fastest number from an unknown load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> dict:
    before = os.getloadavg()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(proc.returncode)
    return {"cmd": " ".join(cmd[1:]), "wall_s": round(wall, 1), "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in before], "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "sweep"
    with tempfile.TemporaryDirectory() as tmp:
        if what == "sweep":
            result = timed([sys.executable, "run.py", "-m", "layer=range(0,25)", "threads=1", "batch_size=64",
                            f"hydra.sweep.dir={tmp}/sweep"])
        elif what == "train":
            result = timed([sys.executable, "-m", "vlmsafety.organism.train", "--seed", "0", "--threads", "1",
                            "--out", f"{tmp}/organism"])
            result["training"] = json.loads(Path(tmp, "organism", "training.json").read_text())["timings_s"]
        elif what == "probe":
            result = timed([sys.executable, "run.py", "task=probe", "threads=1", f"hydra.run.dir={tmp}/probe"])
        else:
            raise SystemExit(f"usage: {sys.argv[0]} sweep|train|probe")
    print(json.dumps(result, indent=1))  # noqa: T201 - a benchmark script's output


if __name__ == "__main__":
    main()
