"""What the entry points share: the run directory and turning user errors into one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from segdil.errors import SegdilError

log = logging.getLogger("segdil")


def run_dir() -> Path:
    """The Hydra run (or multirun job) directory of the current job."""
    return Path(HydraConfig.get().runtime.output_dir)


def user_error(error: BaseException) -> SegdilError | None:
    """The SegdilError behind `error`: itself, or the one Hydra's `instantiate` wrapped (a
    dataset or transform constructor that rejects its arguments); None for a real bug."""
    if isinstance(error, InstantiationException):
        error = error.__cause__
    return error if isinstance(error, SegdilError) else None


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
