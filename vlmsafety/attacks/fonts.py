"""Fonts the typography recipes draw with: shipped inside the package, never looked up on the system.

A font found on the system would make the pixels depend on what happens to be installed (and on
which version: glyphs differ between FreeFont releases), so the defaults are the files in
`vlmsafety/assets/fonts/`, each checked against its recorded sha256 before first use. That folder's
README.md names each file's source package, version and licence; the licence texts sit beside them.
A user may still give any TrueType file by path.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import check_not_lfs_pointer

FONT_DIR = Path(__file__).resolve().parents[1] / "assets" / "fonts"


@dataclass(frozen=True)
class ShippedFont:
    """A font file shipped in `FONT_DIR`, and where it came from."""

    file: str
    sha256: str
    source: str  # the Debian binary package and version the file was extracted from (dpkg-deb -x)
    licence: str
    licence_file: str  # beside the font: the package's copyright file with the full licence text


FREEMONO_BOLD = ShippedFont(
    "FreeMonoBold.ttf",
    "30b4b98748839431a366123f859871549b57e461a8b8ec2d3d65b55b2fb9f22d",
    "fonts-freefont-ttf 20120503-10 (Debian 12), GNU FreeFont 20120503",
    "GPL-3.0-or-later with the GNU FreeFont font exception",
    "FreeMonoBold.LICENSE.txt",
)
LIBERATION_SANS = ShippedFont(
    "LiberationSans-Regular.ttf",
    "8d91388f1d3604b3b8ae0e3ee2d140e50cd6122f9214514f4aca772540a4076d",
    "fonts-liberation2 2.1.5-1 (Debian 12), Liberation Fonts 2.1.5",
    "SIL Open Font License 1.1",
    "LiberationSans-Regular.LICENSE.txt",
)
SHIPPED = {f.file: f for f in (FREEMONO_BOLD, LIBERATION_SANS)}


@functools.cache
def shipped_font_path(font: ShippedFont) -> str:
    """Path of a shipped font, after checking that the file is the one recorded (once per process)."""
    path = FONT_DIR / font.file
    try:
        data = path.read_bytes()
    except OSError:
        raise VlmSafetyError(
            f"the shipped font {path} is missing; reinstall vlmsafety (`pip install -e .` in the checkout)"
        ) from None
    check_not_lfs_pointer(path, data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != font.sha256:
        raise VlmSafetyError(
            f"the shipped font {path} has sha256 {digest[:12]}…, not the recorded {font.sha256[:12]}… "
            "(vlmsafety/assets/fonts/README.md); restore it with `git checkout -- vlmsafety/assets/fonts`"
        )
    return str(path)


def font_path(font: str | None, default: ShippedFont, what: str, setting: str) -> str:
    """The font file to draw with: `font` (a path, or a shipped font's file name) or, if None, `default`.

    what: who draws (for messages); setting: the config key(s) that set `font`.
    """
    if font is None:
        return shipped_font_path(default)
    if font in SHIPPED:
        return shipped_font_path(SHIPPED[font])
    path = os.path.expanduser(font)
    if not os.path.isfile(path):
        raise VlmSafetyError(
            f"{what} font not found at {path} ({setting}); give a TrueType file, or leave it unset "
            f"for the shipped {default.file}"
        )
    check_not_lfs_pointer(path)
    return path


@functools.lru_cache(maxsize=8)
def load_font(path: str, size: int, what: str) -> ImageFont.FreeTypeFont:
    """The TrueType font at `path` in `size` points (cached); one-line error when the file is not a font."""
    try:
        # FreeTypeFont, not truetype(): on a bad file truetype() silently retries by base name elsewhere.
        return ImageFont.FreeTypeFont(path, size)
    except OSError as e:
        raise VlmSafetyError(f"cannot load {what} font {path}: {e}; give a TrueType (.ttf) file") from None
