"""Start-up: commands that run no model never import torch (its import is most of a run's start-up).

Checked with `python -X importtime`, which lists every module a process imported; the times themselves
are measured by `make bench` (docs/PERFORMANCE.md), never asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO


def _imports(*args: str) -> tuple[int, set[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "run.py"), *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    modules = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    return p.returncode, modules


@pytest.mark.parametrize("args, status", [
    (("--help",), 0),
    (("--cfg", "job"), 0),
    (("model=nope",), 2),  # a config error: one line, exit 2
    (("task=report", "sweep_dir=EMPTY"), 2),  # an empty folder has no job records: one line, exit 2
])
def test_commands_without_a_model_do_not_import_torch(args, status, tmp_path):
    args = tuple(a.replace("EMPTY", str(tmp_path)) for a in args)
    code, modules = _imports(*args)
    assert code == status
    assert "hydra" in modules  # the listing works ...
    assert "torch" not in modules and "transformers" not in modules  # ... and names no torch


def test_an_eval_run_still_imports_what_it_needs(tmp_path):
    code, modules = _imports("limit=1", "max_new_tokens=1", "toxicity=none", f"hydra.run.dir={tmp_path}")
    assert code == 0 and "torch" in modules
