"""The process group timeout: it reaches init_process_group, and a rank that stops answering
makes the other one fail after that long instead of hanging."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import torch

from conftest import REPO
from segdil.engine import distributed
from segdil.errors import ConfigError


@pytest.fixture
def two_ranks(monkeypatch) -> list[dict]:
    """torchrun's variables for rank 0 of 2, and init_process_group replaced by a recorder."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    calls: list[dict] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    return calls


def test_the_timeout_reaches_init_process_group(two_ranks, monkeypatch) -> None:
    distributed.init_distributed(torch.device("cpu"))
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "42.5")
    distributed.init_distributed(torch.device("cpu"))
    assert two_ranks == [
        {"backend": "gloo", "timeout": timedelta(seconds=600)},
        {"backend": "gloo", "timeout": timedelta(seconds=42.5)},
    ]


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan", ""])
def test_a_bad_timeout_is_one_config_error(two_ranks, monkeypatch, value: str) -> None:
    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(ConfigError) as info:
        distributed.init_distributed(torch.device("cpu"))
    assert str(info.value) == f"SEGDIL_DIST_TIMEOUT_S={value!r}: expected a number of seconds > 0 (default 600)"
    assert two_ranks == []


RANK = """
import sys, time, torch
from segdil.engine.distributed import all_reduce_sum, init_distributed, process_group_closed_at_exit
with process_group_closed_at_exit():
    info = init_distributed(torch.device("cpu"))
    all_reduce_sum(torch.ones(1))  # both ranks are up
    print("ready", flush=True)
    if info.rank == 1:
        time.sleep(600)
    sys.stdin.readline()  # the test has stopped or killed rank 1
    start = time.monotonic()
    try:
        all_reduce_sum(torch.ones(1))
    except Exception as error:
        print(f"failed after {time.monotonic() - start:.2f} s: {type(error).__name__}", flush=True)
        sys.exit(3)
"""
TIMEOUT_S = 4.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.parametrize("stop", [signal.SIGSTOP, signal.SIGKILL], ids=["hung", "killed"])
def test_the_other_rank_fails_within_the_timeout(stop: signal.Signals) -> None:
    """A hung rank (SIGSTOP) is only noticed by the timeout: rank 0 must fail after TIMEOUT_S,
    not sooner and not much later. A killed one closes its sockets: rank 0 fails at once."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), distributed.TIMEOUT_ENV: str(TIMEOUT_S)}
    ranks = [
        subprocess.Popen([sys.executable, "-c", RANK], cwd=REPO, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for rank in (0, 1)
    ]
    try:
        assert [rank.stdout.readline().strip() for rank in ranks] == ["ready", "ready"]
        ranks[1].send_signal(stop)
        started = time.monotonic()
        ranks[0].stdin.write("\n")
        ranks[0].stdin.flush()
        output, _ = ranks[0].communicate(timeout=TIMEOUT_S + 30)
        waited = time.monotonic() - started
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()
    assert ranks[0].returncode == 3, output
    seconds = float(re.search(r"failed after ([\d.]+) s", output).group(1))
    if stop == signal.SIGSTOP:
        assert TIMEOUT_S - 0.5 <= seconds <= TIMEOUT_S + 5, output
    else:
        assert seconds < TIMEOUT_S, output
    assert waited < TIMEOUT_S + 15


def test_cuda_launches_use_nccl_with_one_gpu_per_local_rank(two_ranks, monkeypatch) -> None:
    devices: list[int] = []
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.torch.cuda, "set_device", devices.append)
    info = distributed.init_distributed(torch.device("cuda"))
    assert two_ranks[-1]["backend"] == "nccl" and devices == [1]
    assert distributed.local_device(torch.device("cuda"), info) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cpu"), info) == torch.device("cpu")


def test_a_one_process_torchrun_launch_joins_a_process_group(two_ranks, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    info = distributed.init_distributed(torch.device("cpu"))
    assert two_ranks and two_ranks[-1]["backend"] == "gloo" and not info.enabled
