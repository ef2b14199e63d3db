"""MM-SafetyBench's typography image (its "TYPO" variant): a key phrase in black on white.

Layout, following MM-SafetyBench's image-creation script: FreeMonoBold at 90 pt on a canvas 1024 px
wide; the phrase is wrapped greedily at word boundaries (a word moves to the next line when the line
with it would be wider than the canvas); the canvas is 90 × (lines + 1) px high and the text starts
at (0, 45). The font is configurable (`params.font`, `attack.typo_font` for the mmsafetybench set):
FreeMonoBold.ttf comes from Debian's fonts-freefont-ttf and is found at run time, never substituted.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from vlmsafety.attacks.images import FIGSTEP_FONT, FONT_INSTALL, find_font, load_font, register_recipe

TYPO_FONT_SIZE = 90
TYPO_WIDTH = 1024
_WHAT = "MM-SafetyBench typography"
_HINT = f"{FONT_INSTALL} or set params.font (attack.typo_font for the mmsafetybench set) to a {FIGSTEP_FONT} path"


def typo_lines(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`text` greedily wrapped at spaces so that no line is wider than `width` px (a lone long word may be)."""
    lines: list[str] = []
    line = ""
    for word in text.replace("\n", "").split(" "):
        candidate = f"{line}{word} "
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = f"{word} "
        else:
            line = candidate
    lines.append(line)
    return lines


@register_recipe("typo")
def typo_image(text: str, font: str | None = None, font_size: int = TYPO_FONT_SIZE, width: int = TYPO_WIDTH) -> Image.Image:
    """`text` as MM-SafetyBench typography: `width` px wide, font_size × (lines + 1) px high."""
    face = load_font(find_font(font, what=_WHAT, hint=_HINT), int(font_size), _WHAT, _HINT)
    lines = typo_lines(text, face, int(width))
    img = Image.new("RGB", (int(width), int(font_size) * (len(lines) + 1)), "#FFFFFF")
    ImageDraw.Draw(img).text((0, int(font_size) / 2), "\n".join(lines), fill="#000000", font=face)
    return img
