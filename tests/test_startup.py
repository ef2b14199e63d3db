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


def test_fast_help_prints_hydras_own_help_text(capsys):
    """`run.py --help` lists the config groups from conf/ instead of Hydra's ~90 compositions: same text."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    from vlmsafety.help import app_help

    argv = ["--help", "model=tiny_llava", "layer=3"]
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="run", config_search_path=create_config_search_path(str(REPO / "conf")))
    try:
        hydra.app_help(config_name="config", args_parser=get_args_parser(), args=get_args_parser().parse_args(argv))
    finally:
        GlobalHydra.instance().clear()
    hydras = capsys.readouterr().out
    ours = app_help(argv, REPO / "conf")
    assert ours is not None and ours + "\n" == hydras
    assert "unlearn/data: builtin, organism, organism_vision, pku_saferlhf, vlguard" in ours and "name: tiny_llava" in ours
    assert app_help(["--hydra-help"], REPO / "conf") is None and app_help(["-m", "--help"], REPO / "conf") is None
