"""vlmsafety command line: `python run.py [-m] [group=option ...] [key=value ...]` (see README)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from vlmsafety.cli import check_group_overrides, fast_exit, multirun_flag_first
from vlmsafety.errors import VlmSafetyError
from vlmsafety.faults import EXIT_INTERRUPTED, INTERRUPTED
from vlmsafety.help import app_help
from vlmsafety.jobs import sweep_exit_status
from vlmsafety.runner import run  # torch-free: each task imports what it needs when it runs
from vlmsafety.ui import print_error

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    return run(cfg)


if __name__ == "__main__":
    sys.argv[1:] = multirun_flag_first(sys.argv[1:])
    try:
        check_group_overrides(sys.argv[1:], CONF)
    except VlmSafetyError as e:
        print_error(str(e))
        sys.exit(2)
    if (text := app_help(sys.argv[1:], CONF)) is not None:  # Hydra's --help text, without its slow group listing
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `python run.py --help | head`: the reader has all it wanted
            pass
        fast_exit(0)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: one line, not a 100-line trace; jobs stay resumable
        print_error(INTERRUPTED)
        fast_exit(EXIT_INTERRUPTED)
    fast_exit(sweep_exit_status())  # a sweep whose jobs did not all complete exits with status 1
