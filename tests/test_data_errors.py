"""Bad data gives one clear line naming the file: wrong root, image without label, label out of
range, unreadable image; in the library, and through train.py without a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from PIL import Image
from test_end_to_end import _one_line_error, run
from torch._utils import ExceptionWrapper
from trees import camvid_mask, make_camvid, make_cityscapes

from segdil.cli import one_line
from segdil.data.checks import check_labels, indices_to_check
from segdil.data.datasets import CamVid, Cityscapes, ImageMaskFolder, PascalVOC
from segdil.data.loader import build_dataset, build_train_loader, collate
from segdil.errors import ConfigError, DataError, user_error

ROOTS = [
    (CamVid, {}, "{root}/train/*.png with labels {root}/trainannot/*.png (SegNet layout: train, val, test)"),
    (
        PascalVOC,
        {},
        "{root}/VOCdevkit/VOC2012/ holding JPEGImages/<id>.jpg, SegmentationClass/<id>.png and "
        "ImageSets/Segmentation/train.txt",
    ),
    (
        Cityscapes,
        {},
        "{root}/leftImg8bit/train/<city>/*_leftImg8bit.png with labels "
        "{root}/gtFine/train/<city>/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png)",
    ),
    (
        ImageMaskFolder,
        {"class_names": ["a", "b"]},
        "{root}/train/images/<stem>.<jpg|png|...> with masks {root}/train/masks/<stem>.png",
    ),
]


@pytest.mark.parametrize(("cls", "args", "layout"), ROOTS)
def test_missing_root_names_the_path_and_the_layout(tmp_path: Path, cls, args: dict, layout: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        cls(root, split="train", **args)
    assert str(info.value) == f"dataset.root={root}: no such folder; expected {layout.format(root=root)}"


def test_missing_split_names_where_it_looked(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {"a": camvid_mask(0)})
    with pytest.raises(DataError, match=f"dataset.split=test: no images found; expected {tmp_path}/test/\\*.png"):
        CamVid(tmp_path, "test")


def test_image_without_label(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {"a": camvid_mask(0), "b": camvid_mask(1), "c": camvid_mask(2)})
    (tmp_path / "trainannot/b.png").unlink()
    message = f"image {tmp_path}/train/b.png has no label \\(expected {tmp_path}/trainannot/b.png\\); 1 of 3"
    with pytest.raises(DataError, match=message):
        CamVid(tmp_path, "train")


def test_out_of_range_labels_name_the_file_and_values(tmp_path: Path) -> None:
    bad = camvid_mask(1)
    bad[:4, :4], bad[-4:, -4:] = 12, 40  # 11 is CamVid's void; 12 and 40 mean nothing
    make_camvid(tmp_path, "train", {"a": camvid_mask(0), "b": bad, "c": camvid_mask(2)})
    dataset = CamVid(tmp_path, "train")
    message = f"label {tmp_path}/trainannot/b.png holds values \\[12, 40\\] outside 0..10 \\(255 = ignore\\); 1 of 3"
    with pytest.raises(DataError, match=message):
        check_labels([dataset])
    check_labels([dataset], sample=0)  # switched off
    check_labels([dataset], sample=2)  # an even sample of 2 of 3 reads the first and the last only


def test_unknown_cityscapes_ids_are_reported_not_hidden(tmp_path: Path) -> None:
    ids = np.full((8, 8), 7, dtype=np.uint8)
    ids[0, 0] = 34  # above the last Cityscapes label id (33)
    make_cityscapes(tmp_path, "train", {"aachen_000000_000019": ids}, {})
    with pytest.raises(DataError, match=r"aachen_000000_000019_gtFine_labelIds.png holds values \[34\] outside 0..18"):
        check_labels([Cityscapes(tmp_path, "train")])


def test_unreadable_image_and_label_name_the_file(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {"a": camvid_mask(0), "b": camvid_mask(1)})
    (tmp_path / "train/a.png").write_bytes(b"not a png")
    (tmp_path / "trainannot/b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = CamVid(tmp_path, "train")
    with pytest.raises(DataError, match=f"cannot read image {tmp_path}/train/a.png: "):
        dataset.load(0)
    with pytest.raises(DataError, match=f"cannot read label {tmp_path}/trainannot/b.png: "):
        check_labels([dataset])


def test_colour_mask_and_size_mismatch(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {"a": camvid_mask(0), "b": camvid_mask(1)})
    Image.new("RGB", (32, 24)).save(tmp_path / "trainannot/a.png")
    Image.new("L", (30, 24)).save(tmp_path / "trainannot/b.png")
    dataset = CamVid(tmp_path, "train")
    with pytest.raises(DataError, match="trainannot/a.png has mode RGB: expected one channel of class indices"):
        dataset.load(0)
    with pytest.raises(DataError, match=f"label {tmp_path}/trainannot/b.png is 30x24 but its image .*/b.png is 32x24"):
        dataset.load(1)


def test_hydra_wrapped_and_worker_wrapped_errors_become_one_line(tmp_path: Path, compose) -> None:
    cfg = compose("train", ["dataset=camvid", f"dataset.root={tmp_path / 'nowhere'}"])
    with pytest.raises(InstantiationException) as info:
        build_dataset(cfg.dataset, "train", None)
    assert str(user_error(info.value)).startswith(f"dataset.root={tmp_path / 'nowhere'}: no such folder")
    assert user_error(RuntimeError("a bug")) is None

    try:
        raise DataError("cannot read image /data/x.png: broken")
    except DataError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DataError) as info:
        wrapper.reraise()
    assert "Traceback" in str(info.value)  # what torch hands the main process
    assert one_line(info.value) == "cannot read image /data/x.png: broken"


def test_check_labels_sample_values() -> None:
    assert indices_to_check(5, "all").tolist() == [0, 1, 2, 3, 4]
    assert indices_to_check(10, 3).tolist() == [0, 4, 9] and indices_to_check(3, 10).tolist() == [0, 1, 2]
    assert indices_to_check(10, 0).tolist() == []
    for bad in ("some", -1, True, 2.5):
        with pytest.raises(ConfigError, match="data.check_labels"):
            indices_to_check(10, bad)


def test_collate_pads_images_of_different_sizes() -> None:
    small, large = (torch.ones(3, 2, 3), torch.zeros(2, 3, dtype=torch.long)), (torch.ones(3, 4, 2), torch.ones(4, 2))
    images, masks = collate([small, (large[0], large[1].long())])
    assert images.shape == (2, 3, 4, 3) and masks.shape == (2, 4, 3)
    assert images[0, :, :2, :3].eq(1).all() and images[0, :, 2:].eq(0).all() and images[1, :, :, 2].eq(0).all()
    assert masks[0, 2:].eq(255).all() and masks[1, :, 2].eq(255).all() and masks[0, :2].eq(0).all()


def test_training_split_smaller_than_a_batch(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {"a": camvid_mask(0), "b": camvid_mask(1)})
    with pytest.raises(DataError, match="the train split has 2 images, fewer than one batch of 4"):
        build_train_loader(CamVid(tmp_path, "train"), 4, 0, 0, torch.device("cpu"))


# --- through train.py -----------------------------------------------------------------------


TINY_CAMVID = ["model.backbone.width=8", "aug.crop_size=[16,16]", "data.batch_size=2", "trainer.progress=false"]


def train_errors(root: Path, run_dir: Path, *overrides: str) -> list[str]:
    """train.py on a CamVid tree must exit non-zero with no traceback; the lines saying error."""
    data = ["dataset=camvid", f"dataset.root={root}"]
    result = run("train.py", *data, *TINY_CAMVID, f"hydra.run.dir={run_dir}", *overrides)
    return [line for line in _one_line_error(result).splitlines() if "error:" in line]


@pytest.mark.e2e
def test_train_stops_before_the_first_step_on_a_bad_label(tmp_path: Path) -> None:
    bad = camvid_mask(1)
    bad[0, 0] = 13
    make_camvid(tmp_path / "camvid", "train", {"a": camvid_mask(0), "b": bad})
    make_camvid(tmp_path / "camvid", "val", {"c": camvid_mask(2)})
    (line,) = train_errors(tmp_path / "camvid", tmp_path / "run")
    label = tmp_path / "camvid/trainannot/b.png"
    assert f"error: label {label} holds values [13] outside 0..10 (255 = ignore); 1 of 2 checked train" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.e2e
def test_unreadable_image_in_a_loader_worker(tmp_path: Path) -> None:
    make_camvid(tmp_path / "camvid", "train", {"a": camvid_mask(0), "b": camvid_mask(1)})
    make_camvid(tmp_path / "camvid", "val", {"c": camvid_mask(2)})
    (tmp_path / "camvid/train/b.png").write_bytes(b"GIF89a broken")
    (line,) = train_errors(tmp_path / "camvid", tmp_path / "run", "data.num_workers=1")
    assert f"error: cannot read image {tmp_path}/camvid/train/b.png: " in line
