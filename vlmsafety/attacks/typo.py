"""MM-SafetyBench's typography image (its "TYPO" variant): a key phrase in black on white.

Follows MM-SafetyBench's `creation/2_img_process.py` (`typo_format_text`, `typo_draw_img`, then
`img.save("<id>.jpg")`), read in the copy inside KeyJayY/MIO-Project at 2142ccd (the official
isXinLiu/MM-SafetyBench could not be fetched here), step for step and for any font:

- the phrase is split at single spaces; the first word opens the text and the running length is
  `textlength(word)`;
- each further word adds `textlength(" " + word)` to the running length. While the sum stays below
  the width the word joins the line as `" " + word`; otherwise it opens a new line as
  `"\\n " + word` (so every continuation line starts with a space) and the running length restarts
  at `textlength(" " + word)`;
- the canvas is `width` × `font_size` · (lines + 1) px, white; the text is drawn in (0, 0, 0) at
  (0, font_size / 2) with Pillow's default line spacing;
- the script saves the image as JPEG with Pillow's defaults: with `jpeg=True` (default) the canvas
  goes through the same encoding, so the pixels are those of the file the script would write.

MM-SafetyBench draws with Arial at 90 pt on 1024 px (`assets/font/ARIAL.TTF`), which is not free.
The default font here is the shipped Liberation Sans Regular, made to Arial's advance widths: every
line break and image size equals Arial's; the glyphs themselves differ (docs/attacks.md).
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from vlmsafety.attacks.fonts import LIBERATION_SANS, font_path, load_font
from vlmsafety.attacks.images import register_recipe

TYPO_FONT_SIZE = 90
TYPO_WIDTH = 1024
_WHAT = "MM-SafetyBench typography"
_SETTING = "params.font; attack.typo_font for the mmsafetybench set"


def typo_text(text: str, font: ImageFont.FreeTypeFont, width: int) -> tuple[str, int]:
    """(the text as drawn, with MM-SafetyBench's line breaks; its number of lines)."""
    # Lengths are measured as the script does: ImageDraw.textlength on an RGB canvas, word by word.
    draw = ImageDraw.Draw(Image.new("RGB", (width, 100), (255, 255, 255)))
    words = text.split(" ")
    drawn = words[0]
    line_length = draw.textlength(drawn, font=font)
    lines = 1
    for word in words[1:]:
        line_length += draw.textlength(" " + word, font=font)
        if line_length < width:
            drawn += " " + word
        else:
            drawn += "\n " + word
            line_length = draw.textlength(" " + word, font=font)
            lines += 1
    return drawn, lines


@register_recipe("typo")
def typo_image(
    text: str, font: str | None = None, font_size: int = TYPO_FONT_SIZE, width: int = TYPO_WIDTH, jpeg: bool = True
) -> Image.Image:
    """`text` as MM-SafetyBench typography: `width` px wide, font_size × (lines + 1) px high.

    font: a TrueType file (path, or a shipped font's file name); None = the shipped Liberation Sans.
    jpeg: pass the canvas through JPEG (Pillow's defaults) as MM-SafetyBench's `<id>.jpg` files were.
    """
    size, width = int(font_size), int(width)
    face = load_font(font_path(font, LIBERATION_SANS, _WHAT, _SETTING), size, _WHAT)
    drawn, lines = typo_text(text, face, width)
    img = Image.new("RGB", (width, size * (lines + 1)), (255, 255, 255))
    ImageDraw.Draw(img).text((0, size / 2.0), drawn, (0, 0, 0), font=face)
    if not jpeg:
        return img
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")
