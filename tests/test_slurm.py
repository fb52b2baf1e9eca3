"""SLURM: a task started by srun takes its rank and rendezvous from SLURM's environment when
torchrun's variables are absent (faked environments; the real two-task run is in
test_engine_processes.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY_TRAIN_OVERRIDES
from segdil.engine import distributed
from segdil.engine.checkpoint import load_checkpoint
from segdil.errors import ConfigError

TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
TASK_5_OF_8 = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]",
               "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0"}


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("gpu07", "gpu07"),
        ("gpu[07-09,12],cpu3", "gpu07"),
        ("gpu[12,07-09]", "gpu12"),  # SLURM's order, not a sorted one
        ("cpu3,gpu[07-09]", "cpu3"),
        ("rack[1-2]-n[01-04]", "rack1-n01"),
        ("node-a[003-010]-ib", "node-a003-ib"),
    ],
)
def test_first_host_of_a_node_list(nodelist: str, host: str) -> None:
    assert distributed.first_host(nodelist) == host


@pytest.mark.parametrize("nodelist", ["", "gpu[07-09", "]x"])
def test_a_bad_node_list_is_one_line(nodelist: str) -> None:
    with pytest.raises(ConfigError, match=r"^SLURM_JOB_NODELIST=.*: expected SLURM's node list"):
        distributed.first_host(nodelist)


def test_torchrun_variables_from_slurms() -> None:
    assert distributed.slurm_environment(TASK_5_OF_8) == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07", "MASTER_PORT": "29500",
    }
    given = distributed.slurm_environment({**TASK_5_OF_8, "MASTER_ADDR": "head", "MASTER_PORT": "31000"})
    assert (given["MASTER_ADDR"], given["MASTER_PORT"]) == ("head", "31000")
    assert distributed.slurm_environment({**TASK_5_OF_8, "SLURM_JOB_NODELIST": "", "SLURM_NODELIST": "n[3-4]"})["MASTER_ADDR"] == "n3"


@pytest.mark.parametrize(
    "environ",
    [
        {},                                                     # not under SLURM
        {**TASK_5_OF_8, "RANK": "0", "WORLD_SIZE": "2"},        # torchrun inside a SLURM job wins
        {**TASK_5_OF_8, "SLURM_NTASKS": "1"},                   # one task trains alone
    ],
)
def test_nothing_is_taken_from_slurm_otherwise(environ: dict) -> None:
    assert distributed.slurm_environment(environ) == {}


def test_no_host_to_meet_is_one_line() -> None:
    with pytest.raises(ConfigError, match="^SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST is"):
        distributed.slurm_environment({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"})


@pytest.fixture
def slurm_task(monkeypatch) -> list[dict]:
    """Task 5 of 8 as srun starts it (no torchrun variables); init_process_group recorded."""
    for key in TORCHRUN_KEYS:
        monkeypatch.setenv(key, "unset")  # so that monkeypatch restores their absence afterwards
        monkeypatch.delenv(key)
    for key, value in TASK_5_OF_8.items():
        monkeypatch.setenv(key, value)
    calls: list[dict] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    return calls


def test_an_srun_task_joins_with_slurms_rank(slurm_task) -> None:
    assert distributed.launch_rank() == 5
    assert distributed.launch_run_id() == "slurm_4242_0"
    info = distributed.init_distributed(torch.device("cpu"))
    assert info == distributed.DistInfo(rank=5, world_size=8, local_rank=1)
    assert slurm_task and slurm_task[0]["backend"] == "gloo"
    # init_process_group's env:// rendezvous reads these.
    assert [os.environ[key] for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")] == ["5", "8", "gpu07", "29500"]


def test_each_task_drives_a_gpu_it_sees(monkeypatch) -> None:
    """--gpus-per-task shows each task one GPU (cuda:0); --gres=gpu:4 shows all four."""
    info = distributed.DistInfo(rank=5, world_size=8, local_rank=1)
    for visible, expected in ((1, 0), (4, 1)):
        monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda visible=visible: visible)
        assert distributed.local_device(torch.device("cuda"), info) == torch.device("cuda", expected)


@pytest.mark.e2e
def test_the_submitit_launcher_runs_a_training_job(tmp_path) -> None:
    """hydra/launcher=submitit_local: the launcher of the `slurm` extra, in a local subprocess
    (submitit_slurm takes the same configuration to a SLURM queue)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra is not installed")
    command = [sys.executable, "train.py", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
               *TINY_TRAIN_OVERRIDES, "trainer.max_iters=2", "data.num_workers=0", f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    assert list((tmp_path / ".submitit").iterdir())  # the job went through submitit
    assert load_checkpoint(tmp_path / "0" / "checkpoints" / "last.pt")["iteration"] == 2
