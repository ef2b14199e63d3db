"""Checks on the command line that Hydra would otherwise answer with a multi-line trace."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from vlmsafety.errors import VlmSafetyError

GROUPS = ("model", "attack", "unlearn", "judge", "toxicity", "experiment")
_SWEEP_FUNCTION = re.compile(r"^\s*(range|choice|interval|glob|tag|sort|shuffle)\(")
_SECRET_KEY = re.compile(r"^(.*_)?(api_?key|secret|password)$|^(hf_|access_|auth_)?token$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a config key (dotted or not) names a secret: api_key, token, password, ..."""
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


def check_no_secrets(argv: Sequence[str]) -> None:
    """Refuse `...api_key=...`-like overrides before Hydra copies them into .hydra/overrides.yaml."""
    for arg in argv:
        key = arg.split("=", 1)[0] if "=" in arg else ""
        if is_secret_key(key):
            raise VlmSafetyError(
                f"refusing the override {key}=...: secrets come from environment variables only (e.g. "
                "PERSPECTIVE_API_KEY) and are never written into a config snapshot"
            )


def check_group_overrides(argv: Sequence[str], conf_dir: Path) -> None:
    """Raise one clear line for `group=option` overrides that name an option that does not exist,
    or for an override that would put a secret on the command line (and so into the snapshot)."""
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
