"""Tiny data sets written in each official on-disk layout, for the dataset and end-to-end tests.

Each builder returns the masks it wrote, as the class ids a loader must give back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import sparse
from scipy.io import savemat

from segdil.data.datasets import write_label
from segdil.data.labels import VOC_PALETTE, voc_colormap

HEIGHT, WIDTH = 24, 32


def write_image(path: Path, seed: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> None:
    """A random RGB image (JPEG or PNG by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def object_mask(class_id: int, border: bool = True) -> np.ndarray:
    """Background with one rectangle of `class_id`, outlined by a 255 band as VOC draws it."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    if border:
        mask[4:20, 6:26] = 255
    mask[6:18, 8:24] = class_id
    return mask


def make_voc(
    root: Path, splits: dict[str, list[str]], classes: dict[str, int], unlabelled: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """<root>/VOCdevkit/VOC2012 with JPEGImages, SegmentationClass palette PNGs (an object of
    `classes[id]` each) and split lists; `unlabelled` ids get an image only, as SBD's do."""
    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split, ids in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for seed, image_id in enumerate(unlabelled):
        write_image(voc / "JPEGImages" / f"{image_id}.jpg", 50 + seed)
    masks = {}
    for seed, (image_id, class_id) in enumerate(classes.items()):
        write_image(voc / "JPEGImages" / f"{image_id}.jpg", seed)
        masks[image_id] = object_mask(class_id)
        write_label(voc / "SegmentationClass" / f"{image_id}.png", masks[image_id], VOC_PALETTE)
    return masks


def make_sbd(root: Path, splits: dict[str, list[str]], classes: dict[str, int]) -> dict[str, np.ndarray]:
    """<root>/dataset with img/*.jpg, cls/*.mat (struct GTcls: Segmentation, Boundaries as a
    cell of sparse matrices, CategoriesPresent) and train.txt / val.txt, as SBD ships them."""
    dataset = root / "dataset"
    (dataset / "cls").mkdir(parents=True)
    for split, ids in splits.items():
        (dataset / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    masks = {}
    for seed, (image_id, class_id) in enumerate(classes.items()):
        write_image(dataset / "img" / f"{image_id}.jpg", 100 + seed)
        masks[image_id] = object_mask(class_id, border=False)  # SBD has no void band
        boundaries = np.empty((20, 1), dtype=object)
        for k in range(20):
            boundaries[k, 0] = sparse.csc_matrix((HEIGHT, WIDTH), dtype=np.uint8)
        gtcls = {"Segmentation": masks[image_id], "Boundaries": boundaries, "CategoriesPresent": np.uint8(class_id)}
        savemat(dataset / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    return masks


def make_cityscapes(root: Path, split: str, labels: dict[str, np.ndarray], train_ids: dict[str, np.ndarray]) -> None:
    """<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png with gtFine labelIds (and, for the
    names in `train_ids`, a labelTrainIds file beside it). Names are `<city>_<seq>_<frame>`."""
    for seed, (name, label_ids) in enumerate(labels.items()):
        city = name.split("_")[0]
        write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", seed, label_ids.shape)
        gt = root / "gtFine" / split / city
        write_label(gt / f"{name}_gtFine_labelIds.png", label_ids, voc_colormap())
        if name in train_ids:
            write_label(gt / f"{name}_gtFine_labelTrainIds.png", train_ids[name], voc_colormap())


def make_camvid(root: Path, split: str, masks: dict[str, np.ndarray]) -> None:
    """<root>/<split>/<name>.png with the raw label (11 = void) in <root>/<split>annot/<name>.png."""
    for seed, (name, mask) in enumerate(masks.items()):
        write_image(root / split / f"{name}.png", seed, mask.shape)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / f"{split}annot" / f"{name}.png")  # mode L, as SegNet's


def camvid_mask(seed: int, values: tuple[int, ...] = tuple(range(12))) -> np.ndarray:
    """A raw CamVid label of 4x4 blocks drawn from `values` (11 is void)."""
    blocks = np.random.default_rng(seed).choice(values, size=(HEIGHT // 4, WIDTH // 4))
    return np.kron(blocks, np.ones((4, 4), dtype=np.int64)).astype(np.uint8)
