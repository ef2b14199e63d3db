"""The launcher's sweeps compose each job's config from config files parsed once per sweep, not once per job.

The reference is Hydra's own composition (a `ConfigLoaderImpl` as `python run.py -m` builds it, every file
parsed again for every job): with parses shared, every job's composed config, `hydra` node included, must
be the same YAML and the same nodes. No test here asserts a time (docs/PERFORMANCE.md has the figures).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins import basic_sweeper, file_config_source
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobRuntime
from hydra.errors import MissingConfigException
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

# Modules, not their classes: Hydra's plugin scan (when the first loader is made) executes every plugin module
# again, redefining its classes, so a class is looked up in its module after that.
from hydra_plugins.vlmsafety_launcher import layer_batching_launcher, shared_parses

# Sweeps as a user types them after `python run.py -m`.
SWEEPS = [
    ("layer=range(0,25)", "threads=1", "batch_size=64"),
    ("model=organism,tiny_llava", "layer=0,12"),
    ("attack=organism,organism_text,organism_image,builtin", "judge=[keyword]"),
    ("+extra=1,two", "~probe.apart", "layer=3"),
    ("judge=[keyword],[keyword,organism_oracle]", "layer=null,5"),
    ("task=unlearn", "unlearn=textual_npo,multimodal", "unlearn/train=lora,full"),  # a sub-group default
    ("+experiment=paper2_text", "model=organism", "hydra.sweeper.max_batch_size=1"),  # its params sweep `attack`
]


def _loader(conf: Path = REPO / "conf") -> ConfigLoaderImpl:
    JobRuntime.instance().set("name", "run")  # as `@hydra.main` in run.py sets it
    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf)))


def _jobs(loader, master) -> list[list[str]]:
    """Every job's overrides, in the batches Hydra's basic sweeper makes of the master config's sweep."""
    sweeper = basic_sweeper.BasicSweeper(max_batch_size=master.hydra.sweeper.max_batch_size, params=master.hydra.sweeper.params)
    args = sweeper._parse_config() + list(master.hydra.overrides.task)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(args)
    return [list(job) for batch in basic_sweeper.BasicSweeper.split_arguments(parsed, sweeper.max_batch_size) for job in batch]


def _composed(loader, sweep: tuple[str, ...]) -> list[str]:
    """Every job's config of `sweep` as YAML (unresolved, `hydra` node included)."""
    return [OmegaConf.to_yaml(cfg, resolve=False) for cfg in _configs(loader, sweep)]


def _configs(loader, sweep: tuple[str, ...], master=None) -> list:
    """`master`: the sweep's master config (composed by `loader` when not given). Jobs copy its resolver cache
    (`${now:...}` as first resolved), so configs compared across loaders must come from one master."""
    master = master if master is not None else loader.load_configuration("config", list(sweep), RunMode.MULTIRUN)
    return [loader.load_sweep_config(master, job) for job in _jobs(loader, master)]


@pytest.mark.slow  # about 100 compositions: 10 s here
def test_sweeps_compose_the_same_configs_with_parses_shared():
    """One loader shares parses across all the sweeps (harsher than a run, which has one sweep): a job must
    never see what another job's overrides did to a config file's nodes."""
    shared = _loader()
    shared_parses.share_parses(shared)
    assert isinstance(shared.repository, shared_parses.SharedParses)
    for sweep in SWEEPS:
        master = _loader().load_configuration("config", list(sweep), RunMode.MULTIRUN)
        want, got = _configs(_loader(), sweep, master), _configs(shared, sweep, master)
        assert len(want) > 1
        assert [OmegaConf.to_yaml(c, resolve=False) for c in got] == [OmegaConf.to_yaml(c, resolve=False) for c in want], sweep
        # and the same nodes: types and flags (struct, readonly) too, which YAML does not show
        assert [pickle.dumps(c) for c in got] == [pickle.dumps(c) for c in want], sweep


def test_a_job_does_not_inherit_another_jobs_overrides():
    """Hydra merges a loaded config's nodes into the job's config and applies the overrides to them in place
    (measured: without copies, a job with no `layer` override after `layer=5` got layer 5)."""
    loader = _loader()
    shared_parses.share_parses(loader)
    master = loader.load_configuration("config", [], RunMode.MULTIRUN)
    assert loader.load_sweep_config(master, ["layer=5", "model.name=renamed"]).layer == 5
    again = loader.load_sweep_config(master, ["seed=1"])
    assert again.layer is None and again.model.name == "organism"


def test_each_config_file_is_parsed_once_per_sweep_through_the_launchers_loader(monkeypatch):
    reads: list[str] = []
    loader = _loader()
    source = file_config_source.FileConfigSource
    parse = source.load_config
    monkeypatch.setattr(source, "load_config", lambda self, config_path: reads.append(config_path) or parse(self, config_path))
    master = loader.load_configuration("config", ["layer=range(0,5)"], RunMode.MULTIRUN)
    jobs = _jobs(loader, master)
    reads.clear()
    for job in jobs:  # Hydra alone: every file of the config again for every job
        loader.load_sweep_config(master, job)
    assert len(reads) == 5 * len(set(reads))

    context = HydraContext(config_loader=loader, callbacks=None)
    layer_batching_launcher.LayerBatchingLauncher().setup(hydra_context=context, task_function=lambda cfg: None, config=master)
    assert isinstance(context.config_loader, layer_batching_launcher._KeepComposed)
    reads.clear()
    for job in jobs:  # the sweeper's validation, through the loader the launcher set up
        context.config_loader.load_sweep_config(master, job)
    assert sorted(reads) == sorted(set(reads)) and "config" in reads


def test_a_file_edited_between_runs_is_read_again(tmp_path):
    """The parses live in one loader, i.e. one `python run.py` (Hydra builds its loader per command)."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    first = _loader(conf)
    shared_parses.share_parses(first)
    master = first.load_configuration("config", [], RunMode.MULTIRUN)
    assert first.load_sweep_config(master, ["layer=1"]).max_new_tokens == 64
    text = (conf / "config.yaml").read_text()
    (conf / "config.yaml").write_text(text.replace("max_new_tokens: 64", "max_new_tokens: 65"))
    second = _loader(conf)
    shared_parses.share_parses(second)
    assert second.load_sweep_config(second.load_configuration("config", [], RunMode.MULTIRUN), ["layer=1"]).max_new_tokens == 65


def test_a_searchpath_override_composes_as_hydra_alone(tmp_path):
    """`hydra.searchpath` re-initialises a composition's sources: a config found only there is not found by a
    composition without it, even after another composition parsed it."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "elsewhere.yaml").write_text((REPO / "conf" / "model" / "organism.yaml").read_text())
    sweep = (f"hydra.searchpath=[file://{tmp_path}]", "model=elsewhere,organism", "layer=0")
    shared = _loader()
    shared_parses.share_parses(shared)
    assert _composed(shared, sweep) == _composed(_loader(), sweep)
    master = shared.load_configuration("config", ["layer=0"], RunMode.MULTIRUN)
    for loader in (shared, _loader()):
        with pytest.raises(MissingConfigException, match="Could not find 'model/elsewhere'"):
            loader.load_sweep_config(master, ["model=elsewhere"])


LAYER_SWEEPS = [
    ("layer=range(0,25)", "threads=1", "batch_size=64"),
    ("layer=null,-1,0,'7',7.0", "judge=[keyword],[keyword,organism_oracle]"),  # layer with another swept key
    ("model=organism,tiny_llava", "layer=0,12", "hydra.job.config.override_dirname.exclude_keys=[seed]", "seed=3"),
    ("+extra=1,two", "~probe.apart", "layer=3,4"),
    ("layer=1,2", "+layer_note=x"),  # a key that starts with `layer` is not the `layer` item
]


def _recording(loader) -> list[list[str]]:
    """The override lists `loader` composes from now on (Hydra's composition, not a derived config)."""
    composed: list[list[str]] = []
    real = loader.load_sweep_config
    loader.load_sweep_config = lambda master, overrides: composed.append(list(overrides)) or real(master, overrides)
    return composed


@pytest.mark.slow  # about 60 compositions: 6 s here
def test_a_jobs_config_made_from_a_layer_sibling_is_hydras_own():
    """The launcher composes the first job of each group with Hydra and makes its `layer=` siblings from it
    (layer_siblings.py): every job's config must be the YAML and the nodes Hydra alone composes."""
    for sweep in LAYER_SWEEPS:
        loader = _loader()
        shared_parses.share_parses(loader)
        keep = layer_batching_launcher._KeepComposed(loader)
        master = loader.load_configuration("config", list(sweep), RunMode.MULTIRUN)
        jobs = _jobs(loader, master)
        composed = _recording(loader)
        got = [keep.load_sweep_config(master, job) for job in jobs]
        want = [_loader().load_sweep_config(master, job) for job in jobs]
        assert [OmegaConf.to_yaml(c, resolve=False) for c in got] == [OmegaConf.to_yaml(c, resolve=False) for c in want], sweep
        assert [pickle.dumps(c) for c in got] == [pickle.dumps(c) for c in want], sweep
        groups = {tuple(o for o in job if not o.startswith("layer=")) for job in jobs}
        assert len(composed) == len(groups) < len(jobs), sweep  # Hydra composed one job per group


def test_what_is_not_a_plain_layer_value_is_composed_by_hydra():
    loader = _loader()
    keep = layer_batching_launcher._KeepComposed(loader)
    master = loader.load_configuration("config", [], RunMode.MULTIRUN)
    composed = _recording(loader)
    for job in (["layer=1"], ["layer=[1,2]"], ["layer=2", "seed=4"], ["seed=4", "layer={a: 1}"], ["layer=5", "layer=6"]):
        assert OmegaConf.to_yaml(keep.load_sweep_config(master, job), resolve=False) == OmegaConf.to_yaml(
            _loader().load_sweep_config(master, job), resolve=False), job
    # a list or dict value, a second `layer` item and another key's change are Hydra's to compose
    assert composed == [["layer=1"], ["layer=[1,2]"], ["layer=2", "seed=4"], ["seed=4", "layer={a: 1}"], ["layer=5", "layer=6"]]
