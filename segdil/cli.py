"""What the entry points share: the run directory and turning user errors into one line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from segdil.engine.distributed import launch_run_id
from segdil.errors import SegdilError, user_error
from segdil.machine import describe, machine_info

log = logging.getLogger("segdil")


def run_stamp() -> str:
    """The name of a new run directory: the start time, or under torchrun or a multi-task srun
    the launch's id, because each rank composes its own config and their clocks may straddle a
    second; all ranks of one launch must share one directory (rank 0 writes, the others only read)."""
    return launch_run_id() or datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


OmegaConf.register_new_resolver("segdil_run_stamp", run_stamp, use_cache=True, replace=True)


def group_options(group: str) -> str:
    """The options of a config group, comma-separated, for the `--help` templates
    (configs/hydra/help/), which name only the groups their script uses; empty outside Hydra."""
    hydra = GlobalHydra.instance()
    if not hydra.is_initialized():
        return ""
    return ", ".join(nested_options(hydra.config_loader(), group))


def nested_options(loader: ConfigLoader, group: str) -> list[str]:
    """A group's options with those of its folders (`experiment=camvid/fast`), without the shared
    parts whose names start with `_` (`camvid/_base`): what a user can choose."""
    names = [name for name in loader.get_group_options(group) if not name.startswith("_")]
    for folder in loader.get_group_options(group, results_filter=ObjectType.GROUP):
        names += [f"{folder}/{name}" for name in nested_options(loader, f"{group}/{folder}")]
    return sorted(names)


OmegaConf.register_new_resolver("segdil_group_options", group_options, replace=True)


def run_dir() -> Path:
    """The Hydra run (or multirun job) directory of the current job."""
    return Path(HydraConfig.get().runtime.output_dir)


def compose_or_exit(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    """`config_name` of `config_dir` with command-line overrides, for scripts that compose
    instead of using `hydra.main`; an unknown group or bad override exits with Hydra's message."""
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name, overrides)
    except HydraException as error:
        sys.exit(f"error: {error}")


def one_line(error: SegdilError) -> str:
    """The error's own message. A DataLoader worker re-raises it in the main process with the
    worker's traceback as its text; the original message is that traceback's last line."""
    last = (str(error).strip() or type(error).__name__).splitlines()[-1]
    return last.removeprefix(f"{type(error).__module__}.{type(error).__qualname__}: ")


@contextmanager
def user_errors() -> Iterator[None]:
    """A SegdilError means bad input: print one line naming what was wrong and exit 2."""
    try:
        yield
    except MissingMandatoryValue as error:
        log.error("error: %s is required: pass %s=VALUE on the command line", error.full_key, error.full_key)
        sys.exit(2)
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        log.error("error: %s", one_line(cause))
        sys.exit(2)


def group_choices(configs: Path, group: str) -> list[str]:
    """The options of a config group: the YAML files in `configs/<group>/` and its folders
    (`camvid/fast`), without the shared parts whose names start with `_`."""
    paths = (configs / group).rglob("*.yaml")
    return sorted(path.relative_to(configs / group).with_suffix("").as_posix() for path in paths if not path.name.startswith("_"))


def check_group_choices(arguments: list[str], configs: Path) -> None:
    """For each `group=name` override (or `group=a,b` in a multirun) naming an option that
    `configs/<group>/` does not have, print one line with the group's choices and exit 2;
    Hydra's own message for it is a dump of its search path."""
    for argument in arguments:
        key, is_assignment, value = argument.lstrip("+").partition("=")
        if not is_assignment or not value or value == "null" or not (configs / key).is_dir():
            continue
        choices = group_choices(configs, key)
        unknown = [name for name in value.split(",") if name not in choices]
        if unknown:
            log.error("error: %s=%s: no such option of %s; the choices are %s", key, unknown[0], key, ", ".join(choices))
            sys.exit(2)


def publish(table: str, result: dict, output: str | Path) -> None:
    """A benchmark's ending: print the machine and its table, write its JSON result, with the
    machine's facts, to `output`."""
    machine = machine_info()
    print(f"machine: {describe(machine)}, torch {machine['torch_version']}")
    print(table)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "machine": machine}, indent=2))
    log.info("written to %s", path)
