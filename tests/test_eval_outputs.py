"""eval.py options end to end: saved predictions, slide / TTA runs, predict.py, export, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, TINY_TRAIN_OVERRIDES
from segdil.data.synthetic import SyntheticShapes
from segdil.metrics import ConfusionMatrix

pytestmark = pytest.mark.e2e
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
DATA = ["dataset.size=64", "dataset.lengths={train: 16, val: 8, test: 8}"]


def run(script: str, *overrides: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, script, *overrides], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("train")
    run("train.py", *TINY_TRAIN_OVERRIDES, f"hydra.run.dir={run_dir}")
    return run_dir / "checkpoints/last.pt"


def test_saved_predictions_reproduce_the_printed_metrics(checkpoint: Path, tmp_path: Path) -> None:
    run("eval.py", f"checkpoint={checkpoint}", *DATA, "eval.save_predictions=true", f"hydra.run.dir={tmp_path}")
    printed = json.loads((tmp_path / "metrics.json").read_text())
    dataset = SyntheticShapes("val", size=64, lengths={"train": 16, "val": 8, "test": 8})
    confusion = ConfusionMatrix(dataset.num_classes)
    for index in range(len(dataset)):
        stem = dataset.stem(index)
        prediction = np.array(Image.open(tmp_path / "predictions" / f"{stem}.png"))
        confusion.update(torch.from_numpy(prediction), torch.from_numpy(dataset.load(index)[1]))
        assert (tmp_path / "color" / f"{stem}.png").is_file() and (tmp_path / "overlay" / f"{stem}.jpg").is_file()
    assert confusion.compute().miou == pytest.approx(printed["mIoU"], abs=1e-12)


def test_slide_and_multiscale_flip_runs(checkpoint: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    slide = tmp_path / "slide"
    run("eval.py", f"checkpoint={checkpoint}", *DATA, f"hydra.run.dir={whole}")
    # A crop covering the 64x64 images: slide must equal whole exactly.
    run("eval.py", f"checkpoint={checkpoint}", *DATA, "eval.mode=slide", "eval.crop=[64,64]", "eval.stride=[32,32]",
        f"hydra.run.dir={slide}")
    assert json.loads((slide / "metrics.json").read_text()) | {"checkpoint": ""} == \
        json.loads((whole / "metrics.json").read_text()) | {"checkpoint": ""}
    result = run("eval.py", f"checkpoint={checkpoint}", *DATA, "eval.mode=slide", "eval.crop=[48,48]",
                 "eval.stride=[32,32]", "eval.scales=[0.75,1.0,1.25]", "eval.flip=true", f"hydra.run.dir={tmp_path / 'tta'}")
    assert "images/s" in result.stdout and "peak memory" in result.stdout
    assert 0 <= json.loads((tmp_path / "tta/metrics.json").read_text())["mIoU"] <= 1


def test_predict_script_on_a_folder(checkpoint: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    dataset = SyntheticShapes("test", size=64)
    for index in range(2):
        Image.fromarray(dataset.load(index)[0]).save(images / f"photo{index}.jpg")
    out = tmp_path / "out"
    run("scripts/predict.py", f"checkpoint={checkpoint}", f"input={images}", f"hydra.run.dir={out}")
    for index in range(2):
        colour = Image.open(out / "color" / f"photo{index}.png")
        assert colour.size == (64, 64) and colour.mode == "RGB"
        assert (out / "overlay" / f"photo{index}.jpg").is_file()


def test_export_matches_pytorch(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    result = run("scripts/export.py", f"checkpoint={checkpoint}", "height=96", "width=128", f"hydra.run.dir={tmp_path}")
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "model.onnx").is_file()
    for name in ("torchscript", "onnx"):
        line = next(line for line in result.stdout.splitlines() if f"] {name}: written" in line)
        assert float(line.rsplit(" ", 1)[1]) < 1e-4, line


MEMORY_PROBE = r"""
import json, torch, functools
from segdil.engine.inference import slide_logits
from segdil.models.backbones import build_backbone
from segdil.models.heads import fcn_head
from segdil.models.segmentor import build_segmentor

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

def peak_above_start(fn):
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    start = rss("VmRSS")
    fn()
    return rss("VmHWM") - start

torch.set_num_threads(2)
model = build_segmentor(19, build_backbone(10, 8, 8, num_stages=2), functools.partial(fcn_head)).eval()
image = torch.randn(1, 3, 1024, 2048)
with torch.no_grad():
    window_batch = peak_above_start(lambda: model(torch.randn(4, 3, 512, 512)))
    slide = peak_above_start(lambda: slide_logits(model, image, 19, (512, 512), (384, 384), batch_windows=4))
    whole = peak_above_start(lambda: model(image))
print(json.dumps({"window_batch": window_batch, "slide": slide, "whole": whole}))
"""


def test_slide_memory_on_a_cityscapes_sized_image_is_bounded() -> None:
    """Bound: the image-sized buffers slide keeps (19-class fp32 logits, their average, and the
    count map: 2 x 19 x 1024 x 2048 x 4 + 1024 x 2048 x 4 bytes = 325 MiB) plus the peak of one
    forward pass over a batch of 4 windows of 512x512, plus 64 MiB of allocator slack."""
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    peaks = json.loads(probe.stdout.strip().splitlines()[-1])
    buffers = 2 * 19 * 1024 * 2048 * 4 + 1024 * 2048 * 4
    bound = buffers + peaks["window_batch"] + 64 * 2**20
    assert peaks["slide"] <= bound, f"slide peak {peaks['slide'] / 2**20:.0f} MiB > bound {bound / 2**20:.0f} MiB"


def test_cityscapes_format_predictions(tmp_path: Path) -> None:
    from segdil.data.labels import CITYSCAPES_LABEL_IDS
    from trees import make_cityscapes

    rng = np.random.default_rng(0)
    names = ["aachen_000000_000019", "bochum_000000_000313", "cologne_000001_000019"]
    for split in ("train", "val"):
        make_cityscapes(tmp_path / "cs", split, {n: rng.integers(0, 34, (24, 32), dtype=np.uint8) for n in names}, {})
    data = [f"dataset.root={tmp_path / 'cs'}", "aug.crop_size=[24,32]"]
    run("train.py", "dataset=cityscapes", *data, "model.backbone.width=8", "data.batch_size=2", "trainer.max_iters=1",
        "trainer.progress=false", f"hydra.run.dir={tmp_path / 'train'}")
    run("eval.py", f"checkpoint={tmp_path / 'train/checkpoints/last.pt'}", "dataset=cityscapes", *data,
        "eval.save_predictions=true", "eval.format=cityscapes", f"hydra.run.dir={tmp_path / 'eval'}")
    for name in names:
        label_ids = np.array(Image.open(tmp_path / "eval/cityscapes" / f"{name}_labelIds.png"))
        train_ids = np.array(Image.open(tmp_path / "eval/predictions" / f"{name}.png"))
        assert np.array_equal(label_ids, np.asarray(CITYSCAPES_LABEL_IDS, dtype=np.uint8)[train_ids])
