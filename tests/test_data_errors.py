"""Bad data gives one clear line naming the file: wrong root, image without label, label out of
range, unreadable or truncated image, image and label sizes that differ; found by the pre-flight
check before the first step (or left out with data.skip_bad=true), in the library and through
train.py without a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from PIL import Image
from test_end_to_end import _one_line_error, run
from torch._utils import ExceptionWrapper
from trees import camvid_mask, make_camvid, make_cityscapes, write_image

from segdil.cli import one_line
from segdil.data.checks import check_labels, indices_to_check
from segdil.data.datasets import CamVid, Cityscapes, ImageMaskFolder, PascalVOC
from segdil.data.loader import build_dataset, build_train_loader, collate
from segdil.engine.trainer import Trainer
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
    with pytest.raises(DataError) as info:
        check_labels([dataset])
    assert str(info.value) == (
        f"1 of 3 checked train samples are bad: label {tmp_path}/trainannot/b.png holds values [12, 40] outside "
        "0..10 (255 = ignore); fix or remove them, or set data.skip_bad=true to train without them"
    )
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
    with pytest.raises(DataError, match=f"2 of 2 checked train samples are bad: cannot read image {tmp_path}/train/a.png: "
                       f".*; cannot read label {tmp_path}/trainannot/b.png: "):
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


# --- the pre-flight check: truncated files and sizes that differ ---------------------------


def truncate(path: Path) -> None:
    """Keep the first half of a file, as an interrupted copy or download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_camvid(root: Path) -> Path:
    """CamVid train a..e and val v: b's image is truncated, c's image is 32x20 under a 32x24
    label, d's label is truncated; a, e and v are fine."""
    make_camvid(root, "train", {name: camvid_mask(k) for k, name in enumerate("abcde")})
    make_camvid(root, "val", {"v": camvid_mask(9)})
    truncate(root / "train/b.png")
    write_image(root / "train/c.png", 2, (20, 32))
    truncate(root / "trainannot/d.png")
    return root


@pytest.mark.parametrize("cache", [False, True])
def test_truncated_image_and_size_mismatch_stop_the_run_before_the_first_step(tmp_path: Path, compose, cache: bool) -> None:
    """Through Trainer construction, train.py's own path; with dataset.cache=true too, whose
    decoding of every frame must come after the check, not trip over the first bad file."""
    root = bad_camvid(tmp_path / "camvid")
    cfg = compose("train", ["dataset=camvid", f"dataset.root={root}", f"dataset.cache={cache}", *TINY_CAMVID])
    with pytest.raises(DataError) as info:
        Trainer(cfg, tmp_path / "run")
    message = str(info.value)
    assert message.startswith(f"3 of 5 checked train samples are bad: cannot read image {root}/train/b.png: ")
    assert (
        f"; label {root}/trainannot/c.png is 32x24 but its image {root}/train/c.png is 32x20; "
        f"cannot read label {root}/trainannot/d.png: " in message
    )
    assert message.endswith("; fix or remove them, or set data.skip_bad=true to train without them")
    assert "\n" not in message and "/a.png" not in message and "/e.png" not in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_error_names_the_first_three_and_counts_all(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {name: camvid_mask(k, (12,)) for k, name in enumerate("abcde")})
    with pytest.raises(DataError) as info:
        check_labels([CamVid(tmp_path, "train")])
    message = str(info.value)
    assert message.startswith("5 of 5 checked train samples are bad (the first 3 shown): label ")
    assert "/a.png" in message and "/c.png" in message and "/d.png" not in message


def test_truncated_jpeg_is_decoded_and_found(tmp_path: Path) -> None:
    """PIL's verify does not read a JPEG's data; the check decodes formats other than PNG."""
    (tmp_path / "train/masks").mkdir(parents=True)
    for stem in ("a", "b"):
        write_image(tmp_path / "train/images" / f"{stem}.jpg", 0)
        Image.fromarray(np.zeros((24, 32), dtype=np.uint8)).save(tmp_path / "train/masks" / f"{stem}.png")
    truncate(tmp_path / "train/images/b.jpg")
    with pytest.raises(DataError, match=f"1 of 2 checked train samples are bad: cannot read image {tmp_path}/train/images/b.jpg: "):
        check_labels([ImageMaskFolder(tmp_path, ["a", "b"])])


def test_skip_bad_leaves_the_bad_samples_out_with_one_warning(tmp_path: Path, caplog) -> None:
    root = bad_camvid(tmp_path)
    dataset = CamVid(root, "train", cache=True)
    with caplog.at_level(logging.WARNING, logger="segdil.data.checks"):
        check_labels([dataset], skip_bad=True)
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.startswith("data.skip_bad=true: leaving out 3 bad train samples: cannot read image ")
    assert all(f"/{name}.png" in warning for name in "bcd")
    assert [path.name for path in dataset.images] == ["a.png", "e.png"] == [path.name for path in dataset.labels]
    assert len(dataset.skipped) == 3 and dataset.skipped[1].startswith(f"label {root}/trainannot/c.png is 32x24")
    build_train_loader(dataset, 2, 0, seed=0, device=torch.device("cpu"))  # decodes the two kept frames, no others
    assert sorted(dataset.decoded) == [0, 1]
    expected = [np.where(camvid_mask(k) == 11, 255, camvid_mask(k)) for k in (0, 4)]
    assert sorted(m.tobytes() for m in expected) == sorted(dataset.decoded[i][1].tobytes() for i in (0, 1))


def test_skip_bad_refuses_to_leave_nothing_and_wants_a_boolean(tmp_path: Path) -> None:
    make_camvid(tmp_path, "train", {"a": camvid_mask(0, (12,))})
    with pytest.raises(DataError, match="1 of 1 checked train samples are bad: .*; data.skip_bad=true would leave none"):
        check_labels([CamVid(tmp_path, "train")], skip_bad=True)
    with pytest.raises(ConfigError, match="data.skip_bad='yes': expected true or false"):
        check_labels([CamVid(tmp_path, "train")], skip_bad="yes")


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
    assert f"error: 1 of 2 checked train samples are bad: label {label} holds values [13] outside 0..10 (255 = ignore)" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.e2e
def test_unreadable_image_in_a_loader_worker(tmp_path: Path) -> None:
    make_camvid(tmp_path / "camvid", "train", {"a": camvid_mask(0), "b": camvid_mask(1)})
    make_camvid(tmp_path / "camvid", "val", {"c": camvid_mask(2)})
    (tmp_path / "camvid/train/b.png").write_bytes(b"GIF89a broken")
    # With the pre-flight check off, the worker is the first to read the broken file.
    (line,) = train_errors(tmp_path / "camvid", tmp_path / "run", "data.num_workers=1", "data.check_labels=0")
    assert f"error: cannot read image {tmp_path}/camvid/train/b.png: " in line
