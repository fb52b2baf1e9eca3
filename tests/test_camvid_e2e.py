"""train.py then eval.py on the real CamVid (../shared/data/camvid) at a tiny width and crop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA, require_data
from segdil.data.labels import CAMVID_CLASSES
from test_end_to_end import run

pytestmark = pytest.mark.e2e

# Validation at a quarter of the resolution keeps the 101 val images cheap on 2 cores.
DATA = ["dataset=camvid", "aug.val_scale=0.25"]


@pytest.fixture(scope="module")
def camvid() -> Path:
    return require_data(SHARED_DATA / "camvid")


@pytest.fixture(scope="module")
def trained(camvid: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("camvid_train")
    result = run(
        "train.py",
        *DATA,
        f"dataset.root={camvid}",
        "model.backbone.width=8",
        "aug.crop_size=[64,64]",
        "data.batch_size=2",
        "data.val_batch_size=16",
        "trainer.max_iters=2",
        "trainer.val_every=2",
        "trainer.ckpt_every=2",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checked = [line for line in (result.stdout + result.stderr).splitlines() if "pre-flight check of 367 of 367 train" in line]
    assert len(checked) == 1 and "files whole, image and label sizes equal, labels within 0..10 or 255" in checked[0]
    return run_dir


def test_eval_reports_camvid_classes(camvid: Path, trained: Path, tmp_path: Path) -> None:
    checkpoint = trained / "checkpoints/last.pt"
    result = run("eval.py", f"checkpoint={checkpoint}", *DATA, f"dataset.root={camvid}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["per_class_iou"]) == list(CAMVID_CLASSES)
    assert metrics["split"] == "val" and metrics["num_images"] == 101
    assert all(f"\n{name} " in result.stdout + result.stderr for name in CAMVID_CLASSES)  # the IoU table
    final = json.loads((trained / "metrics.json").read_text())["final"]
    assert metrics["mIoU"] == pytest.approx(final["mIoU"])  # same checkpoint, same val split
