"""Every third-party package the code or the tests import is declared in pyproject.toml, not just installed.

A package that arrives only as another one's dependency disappears when that one changes its own
(scikit-learn came with alt-profanity-check; huggingface_hub comes with transformers), and a fresh
`pip install -e '.[test]'` then fails on an import. The package imports may use the base
dependencies and any extra (optional ones are imported where they are needed); the tests may use
the base dependencies and the `test` extra, which is what `make test` installs.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")


def _name(requirement: str) -> str:
    """The PEP 503 normalised project name of a requirement string ("hydra-core>=1.3" → "hydra-core")."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {k: {_name(r) for r in v} for k, v in project.get("optional-dependencies", {}).items()}
    return {_name(r) for r in project["dependencies"]}, extras


def _imports(folder: Path) -> set[str]:
    """Top-level names of the absolute imports in the .py files under `folder`."""
    names: set[str] = set()
    for file in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _undeclared(folder: Path, allowed: set[str]) -> dict[str, list[str]]:
    """Imported third-party modules under `folder` whose distribution is not in `allowed`: {module: distributions}."""
    local = {p.stem for p in (REPO / "tests").glob("*.py")} | {p.name for p in REPO.iterdir() if p.is_dir()}
    providers = md.packages_distributions()
    missing = {}
    for module in sorted(_imports(folder)):
        if module in sys.stdlib_module_names or module in local or module == "vlmsafety":
            continue
        # a module that is not installed (an extra's, e.g. `datasets`) is taken to share its project's name
        dists = {_name(d) for d in providers.get(module, [module])}
        if not dists & allowed:
            missing[module] = sorted(dists)
    return missing


def test_the_tests_import_only_declared_packages():
    base, extras = _declared()
    assert "scikit-learn" in extras["test"]  # the probe's reference (tests/test_refusal_direction.py)
    assert _undeclared(REPO / "tests", base | extras["test"]) == {}


def test_the_package_imports_only_declared_packages():
    base, extras = _declared()
    assert _undeclared(REPO / "vlmsafety", base | set().union(*extras.values())) == {}
