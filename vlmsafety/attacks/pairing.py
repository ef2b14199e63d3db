"""Images for text-only attack sets: none, blank, solid colour, seeded noise, or a seeded pick from a folder.

`attack.image: folder` pairs each prompt with one image of `attack.image_dir`, drawn with
`attack.image_seed`: AdvBench-COCO (paper 1's "AC" set) is AdvBench with a folder of COCO images.
The draw for an item depends only on (image_seed, item id, the sorted file names), never on the
order the file system lists the folder in nor on the other rows, so a skipped row or a
`categories` filter leaves every other pair unchanged.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from vlmsafety.attacks.base import ImageSpec
from vlmsafety.attacks.images import DEFAULT_SIZE, size_pair
from vlmsafety.attacks.rows import check_image
from vlmsafety.attacks.sources import attack_name, configured_path
from vlmsafety.errors import VlmSafetyError

TEXT_IMAGE_POLICIES = ("none", "blank", "solid", "noise", "folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def folder_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (by suffix), sorted by name."""
    if not folder.is_dir():
        raise VlmSafetyError(f"image folder {folder} does not exist (attack.image_dir)")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=lambda p: p.name)
    if not files:
        raise VlmSafetyError(f"image folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def pick(files: Sequence[Path], seed: int, item_id: str) -> Path:
    """The file paired with `item_id`: a uniform draw seeded by (seed, item_id)."""
    # random.Random(str) hashes the string with SHA-512: stable across processes and platforms.
    return files[random.Random(f"{seed}:{item_id}").randrange(len(files))]


@dataclass(frozen=True)
class TextImagePolicy:
    """The image (or none) given to each prompt of a text-only set, from `attack.image` and its keys."""

    kind: str = "none"
    size: int | list[int] = DEFAULT_SIZE
    color: str | list[int] = "#FFFFFF"
    seed: int = 0
    files: tuple[Path, ...] = ()

    @classmethod
    def from_cfg(cls, attack: DictConfig) -> TextImagePolicy:
        kind = "none" if attack.get("image") is None else str(attack.get("image"))
        if kind not in TEXT_IMAGE_POLICIES:
            raise VlmSafetyError(
                f"attack {attack_name(attack)!r}: attack.image={kind!r} is not valid; use one of: {', '.join(TEXT_IMAGE_POLICIES)}"
            )
        size = attack.get("image_size", DEFAULT_SIZE)
        size = int(size) if isinstance(size, int) else [int(v) for v in size]
        if kind in ("blank", "solid", "noise"):
            size_pair(size)  # too large: one line now, not an out-of-memory kill while rendering
        color = attack.get("image_color", "#FFFFFF")
        color = str(color) if isinstance(color, str) else [int(v) for v in color]
        files: tuple[Path, ...] = ()
        if kind == "folder":
            folder = configured_path(attack, "image_dir")
            if folder is None:
                raise VlmSafetyError(f"attack {attack_name(attack)!r}: attack.image=folder needs attack.image_dir")
            files = tuple(folder_images(folder))
        return cls(kind, size, color, int(attack.get("image_seed", 0)), files)

    def spec(self, item_id: str) -> ImageSpec | None:
        """The image for `item_id`; a folder pick is checked (BadRow if missing or corrupt)."""
        if self.kind == "none":
            return None
        if self.kind == "blank":
            return ImageSpec("blank", {"size": self.size})
        if self.kind == "solid":
            return ImageSpec("solid", {"color": self.color, "size": self.size})
        if self.kind == "noise":
            # crc32, not hash(): Python salts str hashes per process.
            return ImageSpec("noise", {"seed": zlib.crc32(f"{self.seed}:{item_id}".encode()), "size": self.size})
        path = pick(self.files, self.seed, item_id)
        check_image(path)
        return ImageSpec("file", {"path": str(path)})
