"""Terminal output: one rich console, progress bars for long work, tables.

The console shows what a person watches (one line per job, warnings, errors, the tables); the details
of a job (its per-layer and per-phase results, resume decisions) are logged with `extra=DETAIL` and go to
the job's `run.log` only. On a terminal, log records are laid out by rich (wrapped to its width); in a
file or a pipe each record is one unwrapped line, so that it can be grepped.
"""

from __future__ import annotations

import logging
import re
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress() -> Progress:
    """A transient progress bar: description, bar, done/total, elapsed, ETA. Off a terminal it shows nothing
    (rich would leave an empty line in the file or pipe for each bar)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


# `log.info(..., extra=DETAIL)`: for the job's log file, not the console
DETAIL = {"detail": True}


class ConsoleHandler(RichHandler):
    """Logging to the shared stderr console. Skipped: records logged with extra={"printed": True} (already
    printed whole, e.g. a one-line error) and with extra=DETAIL (the log file has them). Off a terminal,
    each record is one plain line `HH:MM:SS LEVEL message`, never wrapped."""

    def __init__(self, **kwargs):
        kwargs.setdefault("console", console)
        super().__init__(**kwargs)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "printed", False) or getattr(record, "detail", False):
            return
        if self.console.is_terminal:
            super().emit(record)
            return
        try:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            line = f"{stamp} {record.levelname} {self.format(record)}"
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class DropLauncherJobLines(logging.Filter):
    """Drops Hydra's basic launcher line per job (`\t#3 : layer=3 ...`): the job's own line
    (`vlmsafety.job_lines`) gives the same number and overrides with the job's result."""

    _LINE = re.compile(r"^\s*#\d+ : ")

    def filter(self, record: logging.LogRecord) -> bool:
        # hydra_plugins.: the project's launcher (hydra/launcher=vlmsafety) logs the same line
        return not (record.name.startswith(("hydra.", "hydra_plugins.")) and self._LINE.match(record.getMessage()))


def print_error(message: str) -> None:
    """Print a user-facing error as exactly one unwrapped line on stderr."""
    console.print(f"error: {message}", soft_wrap=True, markup=False, highlight=False, style="bold red")
