"""The one validation layer for the top-level config (issue 13): checked before any heavy import.

- `check_override_keys(argv, conf_dir)`: before Hydra composes, a misspelt key (`lmit=8`) is one
  line naming the closest valid key (never `+lmit=8`, which Hydra would accept and then ignore).
- `check_values(cfg)`: the composed config's top-level values have the right type and range
  (`layer=true`, `seed=1.5`, `limit=ten`, `max_new_tokens=0`, `device=tpu`, `top_p=2`, ...), so
  a bad value fails in milliseconds, not after a model load, and is never silently coerced
  (`seed=1.5` run with 1.5 but recorded as 1; `layer=3.0` keyed apart from `layer=3`).
- `ConfigCheck`: the Hydra callback that runs `check_values` when a run or multirun starts.
Only stdlib, omegaconf and Hydra's callback base: nothing here may import torch.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from vlmsafety.errors import VlmSafetyError

GROUPS = ("model", "attack", "unlearn", "judge", "toxicity", "experiment")
_LIST_GROUPS = ("judge", "toxicity")  # each option file is {name: {...}}, several options at once


# --- values --------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(minimum: int | None = None, nullable: bool = False, hint: str = "") -> Callable[[str, Any], str | None]:
    def check(key: str, v: Any) -> str | None:
        if v is None and nullable:
            return None
        if not _is_int(v):
            return f"{key}={_show(v)} is not a whole number{' or null' if nullable else ''}{hint}"
        if minimum is not None and v < minimum:
            return f"{key}={v} must be at least {minimum}{hint}"
        return None

    return check


def _flag(key: str, v: Any) -> str | None:
    return None if isinstance(v, bool) else f"{key}={_show(v)} must be true or false"


def _layers(key: str, v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, (list, ListConfig)) or not len(v):
        return f"{key}={_show(v)} must be a non-empty list of whole numbers, e.g. layers='[0,1,2]'"
    bad = next((x for x in v if not _is_int(x)), None)
    return None if bad is None else f"{key} holds {_show(bad)}, not a whole number; e.g. layers='[0,1,2]'"


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device(key: str, v: Any) -> str | None:
    ok = isinstance(v, str) and _DEVICE.match(v)
    return None if ok else f"{key}={_show(v)} is not a device; use auto, cpu, cuda or cuda:N"


def _top_p(key: str, v: Any) -> str | None:
    ok = _is_number(v) and 0 < v <= 1
    return None if ok else f"{key}={_show(v)} must be a number in (0, 1] (1 = no nucleus cut)"


def _temperature(key: str, v: Any) -> str | None:
    return None if _is_number(v) and v >= 0 else f"{key}={_show(v)} must be a number >= 0"


def _max_gb(key: str, v: Any) -> str | None:
    return None if _is_number(v) and v >= 0 else f"{key}={_show(v)} must be a number of GB >= 0"


# top-level key -> check returning the error line (None = fine); a registry, not an if-chain
RULES: dict[str, Callable[[str, Any], str | None]] = {
    "layer": _whole(nullable=True, hint=" (0 = embeddings, -1 = last block, null = the model's default)"),
    "layers": _layers,
    "seed": _whole(),
    "limit": _whole(1, nullable=True, hint=" (null = every item)"),
    "max_new_tokens": _whole(1),
    "batch_size": _whole(1),
    "threads": _whole(1, nullable=True, hint=" (null = the model's cpu_threads)"),
    "device": _device,
    "do_sample": _flag,
    "temperature": _temperature,
    "top_p": _top_p,
    "resume": _flag,
    "fail_fast": _flag,
    "debug": _flag,
    "feature_cache.max_gb": _max_gb,
    "image_limits.max_side": _whole(1),
    "image_limits.max_pixels": _whole(1),
}


def check_values(cfg: DictConfig) -> None:
    """Raise one VlmSafetyError line for the first top-level value of the wrong type or range."""
    for key, rule in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception as e:  # noqa: BLE001 — an interpolation that does not resolve is itself the error
            raise VlmSafetyError(f"{key} cannot be resolved: {e}".splitlines()[0]) from None
        if isinstance(value, DictConfig):
            raise VlmSafetyError(f"{key} must be a single value, not a mapping")
        if (line := rule(key, value)) is not None:
            raise VlmSafetyError(line)
    if cfg.get("do_sample") and cfg.get("temperature") == 0:
        raise VlmSafetyError("temperature=0 with do_sample=true: sampling needs temperature > 0 (or do_sample=false for greedy)")


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return "null" if v is None else str(v)


class ConfigCheck(Callback):
    """Hydra callback (conf/config.yaml): check the composed config's values when a run or multirun starts."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_on_error(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_on_error(config)


def _exit_on_error(config: DictConfig) -> None:
    try:
        check_values(config)
    except VlmSafetyError as e:
        import sys

        from vlmsafety.ui import print_error

        print_error(str(e))
        sys.exit(2)


# --- keys on the command line --------------------------------------------------------------------
def check_override_keys(argv: Sequence[str], conf_dir: Path) -> None:
    """One line for an override of a key the config does not have, naming the closest valid key.

    Checks top-level keys, and the keys of the selected model / attack / unlearn / judge / toxicity
    options one level down. `+key=` (adding a key) and `hydra.*` are left to Hydra."""
    overrides = [a for a in argv if "=" in a and not a.startswith(("+", "~", "-", "hydra.", "hydra/"))]
    top = _top_keys(conf_dir)
    chosen = _selected(argv, conf_dir)
    experiment = any(re.match(r"^\+?experiment=", a) for a in argv)  # may add keys or swap groups: leave to Hydra
    for arg in overrides:
        key, value = arg.split("=", 1)
        parts = key.split(".")
        if (parts[0] in GROUPS and len(parts) == 1) or "/" in parts[0]:
            continue  # a group choice (checked by cli.check_group_overrides)
        if parts[0] not in top:
            _unknown(key, value, parts[0], sorted(top), "top-level keys")
        if experiment or len(parts) < 2 or parts[0] not in GROUPS:
            continue
        if parts[0] in _LIST_GROUPS:
            names = chosen.get(parts[0], {})
            if parts[1] not in names:
                _unknown(key, value, parts[1], sorted(names), f"{parts[0]} entries of this run")
            if len(parts) > 2 and names.get(parts[1]) is not None and parts[2] not in names[parts[1]]:
                _unknown(key, value, parts[2], sorted(names[parts[1]]), f"options of {parts[0]}.{parts[1]}")
        else:
            keys = chosen.get(parts[0])
            if keys is not None and parts[1] not in keys:
                _unknown(key, value, parts[1], sorted(keys), f"keys of {parts[0]}")


def _unknown(key: str, value: str, part: str, valid: Sequence[str], what: str) -> None:
    close = difflib.get_close_matches(part, valid, n=1, cutoff=0.6)
    hint = f"did you mean {key.replace(part, close[0], 1)}={value}? " if close else ""
    raise VlmSafetyError(f"unknown key {key!r} in {key}={value}; {hint}valid {what}: {', '.join(valid)}")


def _top_keys(conf_dir: Path) -> set[str]:
    cfg = OmegaConf.load(conf_dir / "config.yaml")
    return {str(k) for k in cfg if k not in ("defaults", "hydra")} | set(GROUPS)


def _selected(argv: Sequence[str], conf_dir: Path) -> dict[str, Any]:
    """Per group, the keys of the options this command selects (defaults unless overridden)."""
    picks: dict[str, list[str]] = {}
    for entry in OmegaConf.load(conf_dir / "config.yaml").get("defaults", []):
        if isinstance(entry, (dict, DictConfig)):
            for group, option in entry.items():
                if group in GROUPS:
                    picks[str(group)] = list(option) if isinstance(option, (list, ListConfig)) else [str(option)]
    for arg in argv:
        m = re.match(r"^(?P<group>[a-z_]+)=(?P<value>.*)$", arg)
        if m and m["group"] in GROUPS:
            value = m["value"].strip()
            if "," in value.strip("[]") and not value.startswith("["):
                picks.pop(m["group"], None)  # a sweep over options: any of them, leave to Hydra
                continue
            picks[m["group"]] = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
    out: dict[str, Any] = {}
    for group, options in picks.items():
        if group in _LIST_GROUPS:
            names: dict[str, Any] = {}
            for option in options:
                content = _option_keys(conf_dir, group, option, nested=True)
                names.update(content or {option: None})
            out[group] = names
        elif len(options) == 1 and options[0] not in ("null", ""):
            keys = _option_keys(conf_dir, group, options[0])
            if keys is not None:
                out[group] = keys
    return out


def _option_keys(conf_dir: Path, group: str, option: str, nested: bool = False) -> Any:
    """The keys one option file defines (with the options it inherits through `defaults`), or None."""
    path = conf_dir / group / f"{option}.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if nested:  # {name: {key: ...}}
        return {str(k): {str(kk) for kk in v} if isinstance(v, DictConfig) else None for k, v in cfg.items()}
    keys = {str(k) for k in cfg if k != "defaults"}
    for entry in cfg.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            keys |= _option_keys(conf_dir, group, entry) or set()
        elif isinstance(entry, (dict, DictConfig)):
            keys |= {str(k).split("/")[-1].split("@")[-1] for k in entry}  # a sub-group, e.g. train: lora
    return keys
