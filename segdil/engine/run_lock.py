"""One training process per run directory: `<run_dir>/.lock` holds the owner's pid, so a second
train.py on the same hydra.run.dir is refused instead of interleaving its checkpoints."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segdil.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def owner_text() -> str:
    """What the lock file holds: this process's pid and host (a pid means nothing on another host)."""
    return f"{os.getpid()} {socket.gethostname()}\n"


def _create(lock: Path) -> bool:
    """Create the lock file holding `owner_text()`; False if it exists already (O_EXCL: atomic)."""
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(owner_text())
    return True


def _take_over_if_stale(lock: Path, run_dir: Path) -> None:
    """Remove a lock left by a process that is gone; refuse (ConfigError) one that may be alive."""
    try:
        fields = lock.read_text().split()
    except FileNotFoundError:  # released between our attempt and this read: try again
        return
    if len(fields) != 2 or not fields[0].isdigit():
        raise ConfigError(f"hydra.run.dir={run_dir}: {lock} holds no process id; delete it if no run uses this directory")
    pid, host = int(fields[0]), fields[1]
    if host != socket.gethostname():
        raise ConfigError(
            f"hydra.run.dir={run_dir} is locked by process {pid} on host {host} ({lock}); "
            "choose another run dir, or delete the lock if that run is over"
        )
    if pid_alive(pid):
        raise ConfigError(
            f"hydra.run.dir={run_dir} is in use by process {pid} ({lock}): wait for it to finish or choose another run dir"
        )
    log.warning("run dir %s: taking over the lock of process %d, which is no longer running", run_dir, pid)
    lock.unlink(missing_ok=True)


@contextmanager
def run_lock(run_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold `<run_dir>/.lock` for the duration of the block (disabled: do nothing, e.g. on the
    ranks of a torchrun launch other than 0, which share rank 0's run directory)."""
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    for _ in range(3):  # another process may take a stale lock over at the same moment
        if _create(lock):
            break
        _take_over_if_stale(lock, run_dir)
    else:
        raise ConfigError(f"hydra.run.dir={run_dir}: could not take {lock}, another process keeps taking it")
    try:
        yield
    finally:
        if lock.is_file() and lock.read_text() == owner_text():
            lock.unlink()
