"""`hydra/launcher=vlmsafety` (the default): Hydra's basic launcher, plus a plan for cross-layer decoding.

Jobs run exactly as with Hydra's basic launcher: one after another in this process, each through
Hydra's own `run_job` (its folder, `.hydra/` snapshot, log file, callbacks and return value). Before
the first job starts, the launcher composes every job's config once (the basic launcher composes each
when it starts it; here the composed config is kept and run) and hands the list of (config, folder) to
`vlmsafety.layer_batching`, so that the eval jobs that differ only in `layer` decode their image batches
together (docs/PERFORMANCE.md). A job still keys, resumes, fails and is summarised on its own.

Hydra finds launchers only in the `hydra_plugins` namespace package and imports every module in it at
start-up, whatever the command: this module imports nothing heavy. (No `from __future__ import
annotations`: Hydra scans it before registering it in sys.modules, and dataclasses then cannot resolve
string annotations.)
"""


import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class LayerBatchingLauncherConf:
    _target_: str = "hydra_plugins.vlmsafety_launcher.layer_batching_launcher.LayerBatchingLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="vlmsafety", node=LayerBatchingLauncherConf, provider="vlmsafety")


class LayerBatchingLauncher(BasicLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from vlmsafety import layer_batching

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally")
        composed = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            composed.append((idx, overrides, sweep_config))
        runs: list[JobReturn] = []
        with layer_batching.planned(_job_plan([c for _, _, c in composed])):
            for idx, overrides, sweep_config in composed:
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                runs.append(run_job(
                    hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                    job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
                ))
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs


def _job_plan(configs: list[DictConfig]) -> list[tuple[DictConfig, Path]]:
    """Per job, the config its task will get (Hydra's node removed) and its folder, as `run_job` makes them."""
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    plan = []
    try:
        for config in configs:
            hydra_config.set_config(config)  # `${hydra:...}` interpolations resolve as in the job
            folder = Path(os.path.abspath(os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir))))
            task_cfg = copy.deepcopy(config)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            plan.append((task_cfg, folder))
    except Exception as e:  # noqa: BLE001 (no plan: every job decodes its own batches, and reports its own error)
        log.debug("no cross-layer plan for this sweep: %s", e)
        plan = []
    finally:
        hydra_config.cfg = before
    return plan
