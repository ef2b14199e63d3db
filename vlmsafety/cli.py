"""Checks on the command line that Hydra would otherwise answer with a multi-line trace."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from vlmsafety.credentials import is_secret_key, refusal, secret_in_value
from vlmsafety.errors import VlmSafetyError
from vlmsafety.faults import check_output_paths
from vlmsafety.validate import check_override_keys

__all__ = ["check_group_overrides", "check_no_secrets", "fast_exit", "is_secret_key"]

GROUPS = ("model", "attack", "unlearn", "judge", "toxicity", "experiment")
_SWEEP_FUNCTION = re.compile(r"^\s*(range|choice|interval|glob|tag|sort|shuffle)\(")


def check_no_secrets(argv: Sequence[str]) -> None:
    """Refuse an override whose key names a secret or whose value looks like one (a key in a URL, a
    bearer token), before Hydra copies it into .hydra/, multirun.yaml or a log (credentials.py)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if not _:
            continue
        if is_secret_key(key):
            raise VlmSafetyError(refusal(f"the override {key}=...", "its name says it holds a secret"))
        if why := secret_in_value(value):
            raise VlmSafetyError(refusal(f"the override {key}=...", f"its value holds {why}"))


def check_group_overrides(argv: Sequence[str], conf_dir: Path) -> None:
    """Raise one clear line for `group=option` overrides that name an option that does not exist, for
    a key the config does not have, or for an override that would put a secret on the command line."""
    check_no_secrets(argv)
    for arg in argv:
        m = re.match(r"^[+~]{0,2}(?P<group>[a-z_]+(?:/[a-z_]+)*)=(?P<value>.*)$", arg)
        if not m or m["group"].split("/")[0] not in GROUPS:  # nested groups too, e.g. unlearn/data
            continue
        value = m["value"].strip()
        if not value or value == "null" or _SWEEP_FUNCTION.match(value):
            continue
        names = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
        valid = options(conf_dir, m["group"])
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise VlmSafetyError(
                f"unknown {m['group']} {unknown[0]!r}; valid choices: {', '.join(valid) or '(none)'} "
                f"(files in {conf_dir / m['group']})"
            )
    check_override_keys(argv, conf_dir)  # a misspelt key: one line with the closest valid one (validate.py)
    check_output_paths(argv)  # Hydra would create the run folder under a regular file with a trace


def options(conf_dir: Path, group: str) -> list[str]:
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def fast_exit(status: int) -> None:
    """End the process after a finished run: atexit handlers (log files) run and output is flushed, but the
    interpreter's teardown of torch's and transformers' module graph (~2 s a process, measured in
    docs/PERFORMANCE.md) is skipped."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def multirun_flag_first(argv: Sequence[str]) -> list[str]:
    """`argv` with `-m` / `--multirun` moved before the overrides: Hydra's argparse takes overrides as one
    positional run, so `run.py a=1 -m b=2` would otherwise stop with "unrecognized arguments"."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return [*flags, *(a for a in argv if a not in ("-m", "--multirun"))]
