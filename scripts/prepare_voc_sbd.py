"""Prepare Pascal VOC 2012 + SBD for `dataset=voc_aug` (run once):

    python scripts/prepare_voc_sbd.py --voc data/voc --sbd data/benchmark_RELEASE

`--voc` holds VOCdevkit/VOC2012, `--sbd` is the unpacked SBD archive (dataset/cls/<id>.mat,
dataset/train.txt, dataset/val.txt). Writes into VOCdevkit/VOC2012/:
  SegmentationClassAug/<id>.png         for every train_aug and val id: VOC's own label where
                                        VOC has one (its 255 borders kept), else SBD's
  ImageSets/Segmentation/train_aug.txt  SBD train + SBD val + VOC train, minus every VOC val id
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from segdil.cli import user_errors
from segdil.data.datasets import write_label
from segdil.data.labels import VOC_CLASSES, VOC_PALETTE
from segdil.errors import DataError

log = logging.getLogger("segdil")


def read_ids(path: Path) -> list[str]:
    """The image ids of a VOC / SBD split list, one per line."""
    if not path.is_file():
        raise DataError(f"{path} not found")
    return path.read_text().split()


def read_sbd_label(path: Path) -> np.ndarray:
    """The class map of an SBD `cls/<id>.mat` (struct GTcls, field Segmentation: 0..20)."""
    try:
        mask = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise DataError(f"cannot read SBD label {path}: {error!r}") from None
    if mask.ndim != 2 or mask.min() < 0 or mask.max() >= len(VOC_CLASSES):
        raise DataError(f"SBD label {path}: expected a 2-D map of classes 0..{len(VOC_CLASSES) - 1}")
    return mask.astype(np.uint8)


def prepare(voc_root: Path, sbd_root: Path) -> tuple[int, int, int]:
    """Write SegmentationClassAug and train_aug.txt; return (train_aug ids, labels copied from
    VOC, labels converted from SBD)."""
    voc, sbd = voc_root / "VOCdevkit" / "VOC2012", sbd_root / "dataset"
    expected = {voc: "JPEGImages/, SegmentationClass/, ImageSets/Segmentation/", sbd: "cls/, train.txt, val.txt"}
    for folder, contents in expected.items():
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder; expected it to hold {contents}")
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_ids(lists / "train.txt"), read_ids(lists / "val.txt")
    sbd_ids = read_ids(sbd / "train.txt") + read_ids(sbd / "val.txt")
    train_aug = sorted((set(sbd_ids) | set(voc_train)) - set(voc_val))

    out = voc / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    copied = converted = 0
    for image_id in sorted(set(train_aug) | set(voc_val)):
        image = voc / "JPEGImages" / f"{image_id}.jpg"
        if not image.is_file():
            raise DataError(f"image {image} not found: is {voc} the VOC2012 trainval release?")
        voc_label, sbd_label = voc / "SegmentationClass" / f"{image_id}.png", sbd / "cls" / f"{image_id}.mat"
        if voc_label.is_file():
            shutil.copyfile(voc_label, out / f"{image_id}.png")
            copied += 1
        elif sbd_label.is_file():
            write_label(out / f"{image_id}.png", read_sbd_label(sbd_label), VOC_PALETTE)
            converted += 1
        else:
            raise DataError(f"no label for {image_id}: neither {voc_label} nor {sbd_label} exists")
    (lists / "train_aug.txt").write_text("".join(f"{image_id}\n" for image_id in train_aug))
    return len(train_aug), copied, converted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc", type=Path, required=True, help="folder holding VOCdevkit/VOC2012")
    parser.add_argument("--sbd", type=Path, required=True, help="SBD's benchmark_RELEASE folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors():
        count, copied, converted = prepare(args.voc, args.sbd)
        log.info(
            "train_aug.txt: %d ids | SegmentationClassAug: %d labels copied from VOC, %d converted from SBD",
            count,
            copied,
            converted,
        )


if __name__ == "__main__":
    main()
