"""The official judge prompts, pinned as files in `templates/` (sources in templates/README.md; tests/test_judge_prompts.py
checks each against its upstream text).

Each file's sha256 is pinned here: a changed byte (an editor's trailing newline, a "fix" to a
typo in an official prompt) stops the judge with one error line instead of silently changing
what every verdict means.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from vlmsafety.errors import VlmSafetyError

LLAMA_GUARD_3 = "llama_guard_3_8b.chat_template.jinja"
LLAMA_GUARD_3_VISION = "llama_guard_3_11b_vision.chat_template.jinja"
HARMBENCH_CLS = "harmbench_llama2_cls_prompt.txt"
HARMBENCH_CLS_CONTEXTUAL = "harmbench_llama2_cls_prompt_contextual.txt"

PINNED_SHA256: dict[str, str] = {
    LLAMA_GUARD_3: "5a5561f4ea9576d49d8b81328d0c7c42353549a9d610e0855ff107bf9a04c1f8",
    LLAMA_GUARD_3_VISION: "df3965ba586f628bed4f3bb122cda2cc7502d5fdd87b525d4a3fea37831905f7",
    HARMBENCH_CLS: "788f4f6aa1491c433c4da76c9140cfc30966cea3ff3875c4d0fcb336d92f60e0",
    HARMBENCH_CLS_CONTEXTUAL: "5d6bb9e3cf4d1e5f3f7620093113222ee115af75b0b2913f00e4c7225ec9f219",
}


@functools.cache
def load_prompt(name: str) -> str:
    """The pinned prompt file `name`, checked against its sha256."""
    data = resources.files("vlmsafety.judges").joinpath("templates", name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PINNED_SHA256[name]:
        raise VlmSafetyError(
            f"vlmsafety/judges/templates/{name} was modified (sha256 {digest[:12]}…, pinned "
            f"{PINNED_SHA256[name][:12]}…); restore the official text with git checkout"
        )
    return data.decode("utf-8")
