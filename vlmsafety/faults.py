"""Faults of the machine a run meets (a full disk, a path through a regular file, Ctrl-C), as one line.

The state they leave stays resumable (docs/sweeps.md): a job's appended batches are whole, its
metrics.json says `running` or `failed`, and rerunning the same command goes on from there.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

from vlmsafety.errors import VlmSafetyError

INTERRUPTED = "interrupted; run the same command again to resume (finished jobs and batches are kept)"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

_WHAT = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a part of the path is a regular file, not a folder",
    errno.EEXIST: "a regular file is in the way of a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
}
_DO = {
    errno.ENOSPC: "free some space, then run the same command again: it resumes where it stopped",
    errno.EDQUOT: "free some space, then run the same command again: it resumes where it stopped",
    errno.ENOTDIR: "choose another output or cache folder (hydra.run.dir, hydra.sweep.dir, VLMSAFETY_CACHE)",
    errno.EEXIST: "choose another output or cache folder (hydra.run.dir, hydra.sweep.dir, VLMSAFETY_CACHE)",
}


def as_user_error(exc: BaseException) -> VlmSafetyError | None:
    """The one line for a file-system fault anywhere in `exc`'s chain (None: not one of those)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _WHAT:
            where = f" ({e.filename})" if e.filename else ""
            todo = _DO.get(e.errno, "choose a folder you can write to, then run the same command again")
            return VlmSafetyError(f"{_WHAT[e.errno]}{where}; {todo}")
        e = e.__cause__ or e.__context__
    return None


def check_output_paths(argv: Sequence[str], cwd: Path | None = None) -> None:
    """Before Hydra creates the run or sweep folder: one line when a part of it is a regular file."""
    cwd = cwd or Path.cwd()
    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = next((a.split("=", 1)[1] for a in argv if a.startswith(key + "=")), None)
    path = Path(folder) if folder else cwd / ("multirun_outputs" if multirun else "outputs")
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise VlmSafetyError(f"{key} {path}: {part} is a regular file, not a folder; choose another {key}")
            return
