"""What the entry points share: the run directory and turning user errors into one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf.errors import MissingMandatoryValue

from segdil.errors import SegdilError

log = logging.getLogger("segdil")


def run_dir() -> Path:
    """The Hydra run (or multirun job) directory of the current job."""
    return Path(HydraConfig.get().runtime.output_dir)


@contextmanager
def user_errors() -> Iterator[None]:
    """A SegdilError means bad input: print one line naming what was wrong and exit 2."""
    try:
        yield
    except SegdilError as error:
        log.error("error: %s", error)
        sys.exit(2)
    except MissingMandatoryValue as error:
        log.error("error: %s is required: pass %s=VALUE on the command line", error.full_key, error.full_key)
        sys.exit(2)
