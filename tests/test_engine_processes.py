"""The engine across processes: signals, atomic saves under SIGKILL, torchrun DDP, multirun."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_TRAIN_OVERRIDES
from segdil.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.e2e
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}


def start(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def test_sigterm_saves_last_and_exits_cleanly(tmp_path: Path) -> None:
    overrides = [o for o in TINY_TRAIN_OVERRIDES if not o.startswith(("trainer.max_iters", "trainer.val_every"))]
    process = start([sys.executable, "train.py", *overrides, "trainer.max_iters=100000", "trainer.val_every=100000",
                     "trainer.ckpt_every=100000", f"hydra.run.dir={tmp_path}"])
    wait_for(lambda: list(tmp_path.glob("events.out.tfevents.*")))  # the loop has started
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-2000:]
    state = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert 0 < state["iteration"] < 100000
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and summary["iterations"] == state["iteration"]
    assert "SIGTERM at iteration" in output and "Traceback" not in output


SAVER = """
import sys, torch
from segdil.engine.checkpoint import save_checkpoint
path, iteration = sys.argv[1], 0
payload = torch.randn(4_000_000)  # 16 MB: each save takes long enough to be killed inside it
while True:
    iteration += 1
    save_checkpoint(path, {"iteration": iteration, "payload": payload * 0 + iteration})
    print(iteration, flush=True)
"""


@pytest.mark.parametrize("delay", [0.013, 0.037, 0.071])
def test_sigkill_during_save_leaves_a_loadable_checkpoint(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "last.pt"
    process = start([sys.executable, "-c", SAVER, str(path)])
    assert process.stdout.readline().strip() == "1"  # one complete save exists
    time.sleep(delay)  # then kill it somewhere inside a later save
    process.kill()
    process.wait()
    state = load_checkpoint(path)
    assert state["iteration"] >= 1
    assert torch.all(state["payload"] == state["iteration"])


def torchrun(nproc: int, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "train.py", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


# Two processes x batch 2 against one process x batch 2 x accumulate 2: the same 4 samples per
# step in the same BatchNorm groups (SyncBatchNorm is CUDA-only in torch), so the parameters
# must agree up to float summation order, however the two processes were started.
SAME_GLOBAL_BATCH = [*TINY_TRAIN_OVERRIDES, "trainer.max_iters=3", "trainer.val_every=3", "trainer.val_panels=0",
                     "model.head.hidden_conv=false",  # no dropout: its masks differ between process layouts
                     "data.batch_size=2", "aug=basic"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process, batch 2, accumulate 2 (torchrun with one process)."""
    run_dir = tmp_path_factory.mktemp("one")
    single = torchrun(1, run_dir, *SAME_GLOBAL_BATCH, "trainer.accumulate=2")
    assert single.returncode == 0, single.stderr[-3000:]
    return run_dir


def assert_same_parameters(one: Path, two: Path) -> None:
    """The final weights (last.pt) of two runs agree to float rounding. Running BN statistics are
    buffers, not compared: DDP keeps rank 0's, accumulation updates them twice."""
    first = load_checkpoint(one / "checkpoints/last.pt")["model"]
    second = load_checkpoint(two / "checkpoints/last.pt")["model"]
    parameters = [k for k in first if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    worst = max(float(((first[k] - second[k]).abs().max() / first[k].abs().max().clamp(min=1e-12))) for k in parameters)
    assert worst < 1e-4, f"largest relative parameter difference {worst:.2e}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def finish(processes: list[subprocess.Popen]) -> list[str]:
    """Wait for every process of a launch; all must succeed. Their outputs."""
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return outputs


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(one_process: Path, tmp_path: Path) -> None:
    double = torchrun(2, tmp_path / "two", *SAME_GLOBAL_BATCH)
    assert double.returncode == 0, double.stderr[-3000:]
    assert_same_parameters(one_process, tmp_path / "two")
    # Only rank 0 wrote TensorBoard events: as many files as the one-process run.
    def event_files(run: Path) -> int:
        return len(list(run.glob("events.out.tfevents.*")))

    assert event_files(tmp_path / "two") == event_files(one_process) > 0
    # The all-reduced validation of the 2-process run equals eval.py of its checkpoint on one process.
    evaluation = subprocess.run(
        [sys.executable, "eval.py", f"checkpoint={tmp_path / 'two/checkpoints/last.pt'}", "dataset.size=64",
         "dataset.lengths={train: 16, val: 8, test: 8}", f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    trained = json.loads((tmp_path / "two/metrics.json").read_text())["final"]
    evaluated = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert evaluated["mIoU"] == pytest.approx(trained["mIoU"], abs=1e-12)
    assert evaluated["per_class_iou"] == pytest.approx(trained["per_class_iou"], abs=1e-12)


def test_two_nodes_over_c10d_match_one_process(one_process: Path, tmp_path: Path) -> None:
    """Two torchrun launches, each a "node" of one process, meeting through c10d's rendezvous
    (the multi-node command of docs/training.md, on localhost with gloo)."""
    endpoint = f"localhost:{free_port()}"
    nodes = [
        start([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1",
               "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", "--rdzv_id=two_nodes",
               "train.py", *SAME_GLOBAL_BATCH, f"hydra.run.dir={tmp_path / 'nodes'}"])
        for rank in (0, 1)
    ]
    finish(nodes)
    assert_same_parameters(one_process, tmp_path / "nodes")


def test_two_srun_tasks_match_one_process(one_process: Path, tmp_path: Path) -> None:
    """Two plain `python train.py` processes with the environment srun gives two tasks of one
    step on one node (no torchrun variables): they find each other from SLURM's variables."""
    slurm = {"SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0",
             "MASTER_PORT": str(free_port())}
    tasks = [
        subprocess.Popen([sys.executable, "train.py", *SAME_GLOBAL_BATCH, f"hydra.run.dir={tmp_path / 'srun'}"], cwd=REPO,
                         env={**ENV, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    rank_0, _ = finish(tasks)
    assert "process group: gloo, rank 0 of 2, local rank 0" in rank_0
    assert_same_parameters(one_process, tmp_path / "srun")


def test_multirun_makes_one_directory_per_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "train.py", "-m", "optim.lr=0.01,0.02", *TINY_TRAIN_OVERRIDES, "trainer.max_iters=2",
         f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, lr in (("0", 0.01), ("1", 0.02)):
        state = load_checkpoint(tmp_path / job / "checkpoints/last.pt")
        assert state["iteration"] == 2
        assert f"lr: {lr}" in state["config"]


def test_torchrun_ranks_share_the_default_run_directory(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "train.py"), *TINY_TRAIN_OVERRIDES, "trainer.max_iters=1", "data.batch_size=2"]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs/train").iterdir()
    assert run.name.startswith("torchrun_") and (run / "checkpoints/last.pt").is_file()
