"""Config files parsed once per sweep: a config repository whose loaded configs outlive one composition.

Hydra composes every job of a sweep from scratch: `ConfigLoaderImpl._load_configuration_impl` wraps its
repository in a fresh `CachingConfigRepository` per composition, so the same YAML files are read, scanned
and turned into OmegaConf nodes (with their defaults lists) once per job. `SharedParses` sits between that
per-composition cache and Hydra's `ConfigRepository`: the first composition of the process loads a file,
later ones get a copy of that result.

Copies, because Hydra changes what it loads: `_compose_config_from_defaults_list` merges a loaded config
into the job's config with `no_deepcopy_set_nodes`, so the job's config takes the loaded nodes themselves
and the command-line overrides then change them in place; `_load_single_config` replaces
`ConfigResult.config` (and pops the primary config's `hydra` node when a ConfigStore schema of the same
name matches). Hydra's own `ConfigStore.load` hands out a deep copy for the same reason. Deep-copying a
YAML file's loaded config took a seventh to a tenth of the time loading it again took (measured here on
conf/config.yaml and the default groups' files).

Lifetime: the cache belongs to one config loader, which Hydra creates per command, so a file edited on disk
is read again by the next `python run.py`. Results are keyed by the search path's sources as well as the
config path, so a composition that re-initialises the sources (`hydra.searchpath`) never gets a file found
on another path.
"""

import copy
from typing import Any

from hydra._internal.config_repository import ConfigRepository
from hydra.plugins.config_source import ConfigResult


class SharedParses:
    """Hydra's `ConfigRepository`, remembering every `load_config` result; each call gets its own copy.

    Everything but `load_config` is the wrapped repository's."""

    def __init__(self, repository: ConfigRepository, parsed: dict[tuple[Any, str], ConfigResult | None] | None = None):
        self._repository = repository
        self._parsed = {} if parsed is None else parsed

    def __getattr__(self, name: str) -> Any:
        if name == "_repository":  # not set yet (a copy under construction): no endless recursion
            raise AttributeError(name)
        return getattr(self._repository, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> "SharedParses":
        # `CachingConfigRepository` deep-copies the repository it wraps, so that re-initialising its sources
        # leaves the loader's own untouched: the copy gets its own sources and shares the parsed files
        return SharedParses(copy.deepcopy(self._repository, memo), self._parsed)

    def load_config(self, config_path: str) -> ConfigResult | None:
        key = (self._sources_key(), config_path)
        if key not in self._parsed:
            self._parsed[key] = self._repository.load_config(config_path)
        return _fresh(self._parsed[key])

    def _sources_key(self) -> tuple[tuple[str, str | None, str | None], ...]:
        return tuple((type(s).__name__, s.provider, s.path) for s in self._repository.get_sources())


def _fresh(result: ConfigResult | None) -> ConfigResult | None:
    """A copy of `result` that Hydra may change (its config, header and defaults list) without touching it."""
    if result is None:
        return None
    fresh = copy.copy(result)
    fresh.config = copy.deepcopy(result.config)
    fresh.header = dict(result.header)
    fresh.defaults_list = copy.deepcopy(result.defaults_list)
    return fresh


def share_parses(loader: Any) -> None:
    """Make every later composition of Hydra's config `loader` share parsed config files (once per loader).

    A loader that is not Hydra's own (no `ConfigRepository` at `loader.repository`) is left as it is."""
    repository = getattr(loader, "repository", None)
    if isinstance(repository, ConfigRepository):
        loader.repository = SharedParses(repository)
