"""Terminal output: one rich console, progress bars for long work, tables."""

from __future__ import annotations

import logging

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
    """A transient progress bar: description, bar, done/total, elapsed, ETA."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


class ConsoleHandler(RichHandler):
    """Logging to the shared stderr console; records logged with extra={"printed": True} are skipped
    (they were already printed whole, e.g. a one-line error that must not be wrapped)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("console", console)
        super().__init__(**kwargs)

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "printed", False):
            super().emit(record)


def print_error(message: str) -> None:
    """Print a user-facing error as exactly one unwrapped line on stderr."""
    console.print(f"error: {message}", soft_wrap=True, markup=False, highlight=False, style="bold red")
