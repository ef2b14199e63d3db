"""Helpers for the attack-loader tests: the fixture tree, and attack configs composed as a user gets them."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "attacks"


def copy_fixtures(dest: Path) -> Path:
    """A private copy of the fixture tree (tests mutate it), returned as the data root."""
    root = dest / "data"
    shutil.copytree(FIXTURES, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


def compose_attack(option: str, data_root: Path | str = FIXTURES, *overrides: str):
    """The `attack` node of the full config for `attack=<option>`, as `python run.py` composes it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"attack={option}", f"data_root={data_root}", *overrides])
    return cfg.attack


GENERIC_CSV = (
    "attack.path=${data_root}/generic/prompts.csv",
    "attack.fields.text=question",
    "attack.fields.id=uid",
    "attack.fields.category=topic",
    "attack.fields.harmful=is_harmful",
    "attack.fields.image=picture",
)
GENERIC_JSONL = (
    "attack.path=${data_root}/generic/prompts.jsonl",
    "attack.fields.text=question",
    "attack.fields.id=uid",
    "attack.fields.category=topic",
    "attack.fields.harmful=is_harmful",
)
