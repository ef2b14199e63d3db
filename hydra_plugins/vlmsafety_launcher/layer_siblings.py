"""A sweep job that differs from an already composed one only in `layer=VALUE`: its config without composing.

In `python run.py -m layer=...` every job's overrides are the same but for one `layer=` item, and Hydra
composes each job from the defaults list up (about 60 ms a job here, with parsed files shared). What a
plain top-level value changes in the composed config is known from Hydra's `load_configuration`: the
value itself (set by `ConfigLoaderImpl._apply_overrides_to_config`, as Hydra sets it), that override's
line in `hydra.overrides.task`, and `hydra.job.override_dirname` (Hydra's `get_overrides_dirname`). A
defaults list cannot depend on such a value, so everything else is the sibling's. `derive` does exactly
that on a deep copy of the sibling, with Hydra's own functions; tests/test_launcher_compose.py compares
every derived config with Hydra's composition (YAML and pickled nodes).

Only for a single plain `layer=` override whose value is a scalar (a number, null, a string): `+layer=`,
`~layer`, a list or dict value, a second `layer` item or a changed hydra override compose as usual.
"""

import copy

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf

KEY = "layer"
_SCALARS = (int, float, str, bool, type(None))


class LayerSiblings:
    """Composed configs of one sweep, by their overrides with the `layer` item left out."""

    def __init__(self) -> None:
        self._parser = OverridesParser.create()
        self._bases: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def derive(self, master: DictConfig, overrides: list[str]) -> DictConfig | None:
        """The config Hydra would compose for `overrides`, made from a remembered sibling; None if there is none."""
        found = self._split(master, overrides)
        if found is None:
            return None
        key, parsed, index = found
        base = self._bases.get(key)
        if base is None or KEY not in base or KEY in base.hydra.runtime.choices:  # a config group named `layer`
            return None
        derived = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config([parsed[index]], derived)
        task = [o for o in parsed if not o.is_hydra_override()]
        derived.hydra.overrides.task[task.index(parsed[index])] = parsed[index].input_line
        settings = derived.hydra.job.config.override_dirname
        derived.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=settings.kv_sep, item_sep=settings.item_sep, exclude_keys=settings.exclude_keys
        )
        OmegaConf.copy_cache(from_config=master, to_config=derived)  # as Hydra's load_sweep_config does
        return derived

    def remember(self, master: DictConfig, overrides: list[str], composed: DictConfig) -> None:
        """Keep a pristine copy of a config Hydra composed, for the siblings that follow it."""
        found = self._split(master, overrides)
        if found is not None and found[0] not in self._bases:
            self._bases[found[0]] = copy.deepcopy(composed)

    def _split(self, master: DictConfig, overrides: list[str]) -> tuple[tuple[int, tuple[str, ...]], list[Override], int] | None:
        """(the key of the job's siblings, every override as Hydra parses it, the index of the `layer` item)."""
        hydra_overrides = list(OmegaConf.to_container(master.hydra.overrides.hydra))
        try:
            parsed = self._parser.parse_overrides(hydra_overrides + list(overrides))
        except Exception:  # noqa: BLE001 (Hydra's own composition reports it)
            return None
        hits = [i for i, o in enumerate(parsed) if o.key_or_group == KEY and o.package is None]
        if len(hits) != 1 or not _plain_scalar(parsed[hits[0]]):
            return None
        index = hits[0]
        rest = tuple(o.input_line for i, o in enumerate(parsed) if i != index)
        return (id(master), (*rest, f"#{index}")), parsed, index


def _plain_scalar(override: Override) -> bool:
    return (
        override.type == OverrideType.CHANGE and override.value_type == ValueType.ELEMENT
        and not override.is_hydra_override() and isinstance(override.value(), _SCALARS)
    )
