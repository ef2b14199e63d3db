"""Git LFS pointers: the one check every reader of a user's file runs before parsing it.

A repository cloned without `git lfs` (or downloaded as a source archive) holds, in place of each
large file, a small text "pointer" (git-lfs `docs/spec.md`: the first line is
`version https://git-lfs.github.com/spec/v1`, then `oid sha256:<hex>` and `size <bytes>`; about 130
bytes, so a file over 1 KiB is never taken for one). Parsed as the data it stands for, a pointer gives baffling errors ("missing
columns … found version https://git-lfs…", "cannot identify image file"), so every loader asks here
first and says what to do instead.
"""

from __future__ import annotations

from pathlib import Path

from vlmsafety.errors import VlmSafetyError

MAX_POINTER_BYTES = 1024  # real pointers are ~130 bytes; anything larger is data
# The spec's version line, and the pre-release "hawser" URL that git-lfs still reads as v1.
_VERSION_LINES = (b"version https://git-lfs.github.com/spec/", b"version https://hawser.github.com/spec/")


def is_lfs_pointer(data: bytes) -> bool:
    """Whether `data` (a whole file, or at least its first 1024 bytes) is a Git LFS pointer file."""
    head = data[: MAX_POINTER_BYTES + 1]
    return len(head) <= MAX_POINTER_BYTES and head.startswith(_VERSION_LINES) and b"\noid sha256:" in head


def check_not_lfs_pointer(path: str | Path, data: bytes | None = None) -> None:
    """Raise the one-line LFS error if the file at `path` (or its already read `data`) is a pointer.

    A file that cannot be opened is left to the caller, which knows how to word that error.
    """
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_POINTER_BYTES + 1)
        except OSError:
            return
    if is_lfs_pointer(data):
        raise VlmSafetyError(
            f"{path} is a Git LFS pointer, not the file itself; run `git lfs pull` in the repository it "
            "came from (or download the file directly)"
        )
