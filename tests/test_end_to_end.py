"""train.py then eval.py in subprocesses on a tiny config, and the one-line errors of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_TRAIN_OVERRIDES

pytestmark = pytest.mark.e2e

METRIC_KEYS = {"mIoU", "pixel_acc", "mean_acc", "fwIoU", "per_class_iou", "num_images", "checkpoint", "split", "precision", "machine"}


def run(script: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("train")
    result = run("train.py", "model=tiny_context", *TINY_TRAIN_OVERRIDES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_train_writes_run_directory(trained_run: Path) -> None:
    for relative in ("checkpoints/last.pt", "checkpoints/best.pt", ".hydra/config.yaml", "train.log", "metrics.json"):
        assert (trained_run / relative).is_file(), relative
    assert list(trained_run.glob("events.out.tfevents.*"))  # in the run dir: TensorBoard names the run after it
    state = torch.load(trained_run / "checkpoints/last.pt", weights_only=True)
    assert state["iteration"] == 4 and "model" in state and "model:" in state["config"]
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert summary["iterations"] == 4 and 0.0 <= summary["best_mIoU"] <= 1.0


def test_tensorboard_has_train_and_val_scalars(trained_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_s", "val/mIoU"} <= tags
    assert any(tag.startswith("val_iou/") for tag in tags)
    assert [event.step for event in events.Scalars("val/mIoU")] == [2, 4]


def test_eval_on_checkpoint_writes_metrics(trained_run: Path, tmp_path: Path) -> None:
    result = run(
        "eval.py",
        f"checkpoint={trained_run / 'checkpoints/last.pt'}",
        "dataset.size=64",
        "dataset.lengths={train: 16, val: 8, test: 8}",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS
    assert metrics["split"] == "val" and metrics["num_images"] == 8
    assert set(metrics["per_class_iou"]) == {"background", "disc", "triangle", "small_square", "large_square"}
    for value in [metrics[k] for k in ("mIoU", "pixel_acc", "mean_acc", "fwIoU")]:
        assert 0.0 <= value <= 1.0
    present = [v for v in metrics["per_class_iou"].values() if v is not None]
    assert metrics["mIoU"] == pytest.approx(sum(present) / len(present))
    # The same checkpoint evaluated in the training run's last validation gives the same numbers.
    final = json.loads((trained_run / "metrics.json").read_text())["final"]
    assert metrics["mIoU"] == pytest.approx(final["mIoU"])


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    return result.stderr + result.stdout


@pytest.mark.parametrize(
    ("script", "override", "choice"),
    [("train.py", "model=resnet9000", "dilated_resnet18_context"), ("train.py", "dataset=imagenet", "synthetic"),
     ("eval.py", "dataset=imagenet", "camvid")],
)
def test_an_unknown_group_option_is_one_line_listing_the_choices(tmp_path: Path, script: str, override: str, choice: str) -> None:
    result = run(script, override, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    output = _one_line_error(result).strip()
    group, name = override.split("=")
    assert output.startswith(f"error: {override}: no such option of {group}; the choices are ") and "\n" not in output
    assert choice in output.split("the choices are ")[1].split(", ")


def test_missing_checkpoint(tmp_path: Path) -> None:
    output = _one_line_error(run("eval.py", f"checkpoint={tmp_path / 'missing.pt'}", f"hydra.run.dir={tmp_path}"))
    assert "missing.pt" in output and "no such file" in output


def test_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"hello")
    output = _one_line_error(run("eval.py", f"checkpoint={bogus}", f"hydra.run.dir={tmp_path}"))
    assert "bogus.pt" in output and "segdil checkpoint" in output


def test_eval_requires_checkpoint(tmp_path: Path) -> None:
    output = _one_line_error(run("eval.py", f"hydra.run.dir={tmp_path}"))
    assert "checkpoint" in output


def test_a_run_logged_to_a_file_has_plain_progress_lines_and_no_carriage_returns(tmp_path: Path) -> None:
    overrides = [o for o in TINY_TRAIN_OVERRIDES if not o.startswith(("trainer.progress", "trainer.max_iters"))]
    result = run(
        "train.py", "model=tiny_fcn", *overrides, "trainer.max_iters=14", "trainer.progress=true",
        "trainer.progress_every=0", f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "\r" not in output
    assert "measured step time" in output and "the 2 iterations left take about" in output
    assert "iter 13/14 (93%)" in output


@pytest.mark.parametrize("override", ["data.batch_size=-2", "data.batch_size=0", "trainer.max_iters=abc"])
def test_bad_numbers_exit_2_with_one_line(tmp_path: Path, override: str) -> None:
    result = run("train.py", override, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    output = _one_line_error(result)
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and override.split("=")[0] in errors[0] and "expected a whole number >= 1" in errors[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script runs for real: bash scripts/gpu_check.sh")
def test_gpu_check_reports_every_check_as_skipped_without_cuda() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    checks = ["fp32", "bf16", "fp16", "channels_last", "torchrun_nccl", "eval_slide_flip", "resume", "export"]
    assert [line.split()[1] for line in lines[:-1]] == checks and all(line.startswith("SKIP") for line in lines[:-1])
    assert lines[-1] == "summary: 0 PASS, 0 FAIL, 8 SKIP"


@pytest.mark.parametrize("content", [b"", b"junk" * 10, b"PK\x03\x04truncated"])
@pytest.mark.parametrize("key", ["model.backbone.weights", "model.init_from"])
def test_every_weights_path_gives_one_line_for_a_bad_file(tmp_path: Path, key: str, content: bytes) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    result = run("train.py", "model=tiny_fcn", *TINY_TRAIN_OVERRIDES, f"{key}={bad}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    errors = [line for line in _one_line_error(result).splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{key}={bad}: torch.load failed" in errors[0], errors
