"""One process per run directory: a live holder refuses a second one, a dead one's lock is taken over."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from segdil.engine.run_lock import LOCK_NAME, owner_text, run_lock
from segdil.errors import ConfigError


def test_a_second_holder_is_refused_and_the_lock_goes_with_the_first(tmp_path: Path) -> None:
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == owner_text()
        with pytest.raises(ConfigError) as info, run_lock(tmp_path):
            pass
        assert str(info.value) == (
            f"hydra.run.dir={tmp_path} is in use by process {os.getpid()} ({tmp_path / LOCK_NAME}): "
            "wait for it to finish or choose another run dir"
        )
        assert (tmp_path / LOCK_NAME).read_text() == owner_text()  # the refused one left it alone
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("the run failed")
    assert not (tmp_path / LOCK_NAME).exists()  # released on errors too


def test_another_live_process_holds_it_until_it_dies_then_it_is_taken_over(tmp_path: Path, caplog) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{other.pid} {socket.gethostname()}\n")
        with pytest.raises(ConfigError, match=f"is in use by process {other.pid} "), run_lock(tmp_path):
            pass
    finally:
        other.kill()
        other.wait()
    with caplog.at_level(logging.WARNING, logger="segdil.engine.run_lock"), run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == owner_text()
    assert caplog.messages == [f"run dir {tmp_path}: taking over the lock of process {other.pid}, which is no longer running"]
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "holds no process id; delete it if no run uses this directory"),
     ("12 elsewhere\n", "is locked by process 12 on host elsewhere")],
)
def test_a_lock_that_cannot_be_checked_is_refused(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / LOCK_NAME).write_text(content)
    with pytest.raises(ConfigError, match=message), run_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).read_text() == content


def test_disabled_on_other_ranks(tmp_path: Path) -> None:
    with run_lock(tmp_path / "run", enabled=False):
        assert not (tmp_path / "run").exists()
