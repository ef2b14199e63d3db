"""`python run.py --help` without Hydra's slow path: the same text, in a fraction of the time.

Hydra's `--help` lists the options of every config group by composing the config once per group
(about 90 compositions here, 2 s on the project's 2-core machine); the options are the YAML files
under conf/, so they are listed from the folder instead. The rest is Hydra's own: the config composed
with the command's overrides, printed through the app's `hydra.help.template`. Any other flag
(`--hydra-help`, `--resolve`, `-m`, ...) leaves the command to Hydra.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

from vlmsafety.cli import options

HELP_FLAGS = {"--help", "-h"}


def app_help(argv: Sequence[str], conf_dir: Path, config_name: str = "config") -> str | None:
    """Hydra's help text for `run.py ARGV` when ARGV is --help plus overrides, else None (Hydra answers)."""
    flags = {a for a in argv if a.startswith("-")}
    if not flags or not flags <= HELP_FLAGS:
        return None
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    overrides = [a for a in argv if not a.startswith("-")]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3", job_name="run"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    template = str(cfg.hydra.help.template)
    with open_dict(cfg):
        del cfg["hydra"]
    groups = "".join(f"{g}: {', '.join(options(conf_dir, g))}\n" for g in app_groups(conf_dir))
    return string.Template(template).safe_substitute(APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(cfg))


def app_groups(conf_dir: Path) -> list[str]:
    """Config groups of the app (folders under conf/ holding YAML files, Hydra's own `hydra/` left out)."""
    groups = {
        p.parent.relative_to(conf_dir).as_posix() for p in conf_dir.rglob("*.yaml") if p.parent != conf_dir
    }
    return sorted(g for g in groups if g != "hydra" and not g.startswith("hydra/"))
