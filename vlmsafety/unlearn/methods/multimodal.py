"""`multimodal`: paper 2's objective with an image attached to every harmful request.

The loss is `textual`'s; what changes is the data: each request carries its dataset image, its
FigStep rendering, or a benign picture (`unlearn.image`), and normal examples keep or get images
(`unlearn.normal_image`). Same loop, same parameters trained: only the inputs (and the cost) differ.
"""

from __future__ import annotations

from vlmsafety.unlearn.methods.base import register_method
from vlmsafety.unlearn.methods.textual import Textual


@register_method("multimodal")
class Multimodal(Textual):
    needs_images = True
