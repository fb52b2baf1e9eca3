"""Datasets in their official layouts: listing, class ids after loading, configs, real data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import REPO, SHARED_DATA, require_data
from segdil.data.checks import check_labels
from segdil.data.datasets import Cityscapes, CamVid, ImageMaskFolder, PascalVOC, write_label
from segdil.data.labels import (
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    VOC_CLASSES,
    voc_colormap,
)
from segdil.data.loader import build_dataset, build_train_loader
from segdil.engine.builders import build_transforms
from segdil.errors import ConfigError, DataError
from trees import camvid_mask, make_camvid, make_cityscapes, make_sbd, make_voc, object_mask, write_image


def load_script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Pascal VOC and SBD ---------------------------------------------------------------------


def test_voc_palette_labels_keep_their_255_border(tmp_path: Path) -> None:
    masks = make_voc(tmp_path, {"train": ["2007_000001", "2007_000002"]}, {"2007_000001": 12, "2007_000002": 20})
    label_file = tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png"
    assert Image.open(label_file).mode == "P"  # written as VOC ships them

    dataset = PascalVOC(tmp_path, "train")
    assert len(dataset) == 2 and dataset.class_names == VOC_CLASSES and len(dataset.palette) == 21
    for index, image_id in enumerate(["2007_000001", "2007_000002"]):
        image, mask = dataset.load(index)
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        assert np.array_equal(mask, masks[image_id])
        assert set(np.unique(mask)) == {0, 255, masks[image_id][12, 16]}


def test_voc_lists_the_same_files_as_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets import VOCSegmentation

    make_voc(tmp_path, {"val": ["b", "a"]}, {"a": 1, "b": 2})
    ours, theirs = PascalVOC(tmp_path, "val"), VOCSegmentation(str(tmp_path), year="2012", image_set="val")
    assert list(map(str, ours.images)) == theirs.images and list(map(str, ours.labels)) == theirs.masks


def test_prepare_voc_sbd_then_train_aug(tmp_path: Path, compose) -> None:
    from torchvision.datasets import SBDataset

    voc_masks = make_voc(
        tmp_path / "voc",
        {"train": ["t1", "both"], "val": ["v1"]},
        {"t1": 3, "both": 7, "v1": 9},
        unlabelled=("s1", "s2", "s3"),  # SBD's extra images are in VOC2012's JPEGImages
    )
    sbd_masks = make_sbd(
        tmp_path / "benchmark_RELEASE",
        {"train": ["s1", "both"], "val": ["s2", "v1", "s3"]},
        {"s1": 15, "both": 8, "s2": 20, "v1": 9, "s3": 1},
    )
    # The fixture is in SBD's structure: torchvision's SBD reader decodes it as written.
    sbd_reader = SBDataset(str(tmp_path / "benchmark_RELEASE" / "dataset"), image_set="train", mode="segmentation")
    assert np.array_equal(np.array(sbd_reader[0][1]), sbd_masks["s1"])

    prepare = load_script("prepare_voc_sbd").prepare
    assert prepare(tmp_path / "voc", tmp_path / "benchmark_RELEASE") == (5, 3, 3)
    voc = tmp_path / "voc/VOCdevkit/VOC2012"
    # SBD train + SBD val + VOC train, minus every VOC val image.
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == ["both", "s1", "s2", "s3", "t1"]
    for image_id, expected in [("s1", sbd_masks["s1"]), ("both", voc_masks["both"]), ("v1", voc_masks["v1"])]:
        assert np.array_equal(np.array(Image.open(voc / f"SegmentationClassAug/{image_id}.png")), expected)

    cfg = compose("train", ["dataset=voc_aug", f"dataset.root={tmp_path / 'voc'}"])
    train = build_dataset(cfg.dataset, cfg.dataset.train_split, None)
    val = build_dataset(cfg.dataset, cfg.dataset.val_split, None)
    assert [train.stem(i) for i in range(len(train))] == ["both", "s1", "s2", "s3", "t1"]
    assert np.array_equal(train.load(1)[1], sbd_masks["s1"]) and np.array_equal(val.load(0)[1], voc_masks["v1"])
    check_labels([train, val])


def test_prepare_voc_sbd_names_a_missing_label(tmp_path: Path) -> None:
    make_voc(tmp_path / "voc", {"train": ["t1"], "val": []}, {"t1": 3}, unlabelled=("s1",))
    make_sbd(tmp_path / "sbd", {"train": ["s1"], "val": []}, {})
    with pytest.raises(DataError, match=r"no label for s1: neither .*SegmentationClass/s1.png nor .*cls/s1.mat"):
        load_script("prepare_voc_sbd").prepare(tmp_path / "voc", tmp_path / "sbd")


def test_real_voc_sample_palette_and_values() -> None:
    root = require_data(SHARED_DATA / "voc_sample")
    label_file = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000063.png"
    # The palette written by the VOC devkit is the colour map segdil computes.
    assert Image.open(label_file).getpalette() == [v for colour in voc_colormap(256) for v in colour]
    _, mask = PascalVOC(root, "train").load(0)
    values, counts = np.unique(mask, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {0: 72224, 9: 78930, 12: 27632, 255: 8714}


# --- Cityscapes -----------------------------------------------------------------------------


def test_cityscapes_label_ids_map_to_train_ids(tmp_path: Path) -> None:
    # label ids: road 7, sidewalk 8, car 26, bicycle 33, person 24 -> 0, 1, 13, 18, 11;
    # unlabeled 0, ego vehicle 1, parking 9, polegroup 18, caravan 29 -> 255 (not evaluated).
    ids = np.array([[7, 8, 26, 33, 24], [0, 1, 9, 18, 29]], dtype=np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    expected = np.array([[0, 1, 13, 18, 11], [255] * 5], dtype=np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    train_ids = np.full(ids.shape, 5, dtype=np.uint8)
    train_ids[0] = 255
    make_cityscapes(
        tmp_path,
        "val",
        {"aachen_000000_000019": ids, "bochum_000000_000313": ids},
        {"bochum_000000_000313": train_ids},  # precomputed train ids win over label ids
    )
    dataset = Cityscapes(tmp_path, "val")
    assert dataset.class_names == CITYSCAPES_CLASSES and len(dataset) == 2
    assert [label.name for label in dataset.labels] == [
        "aachen_000000_000019_gtFine_labelIds.png",
        "bochum_000000_000313_gtFine_labelTrainIds.png",
    ]
    assert np.array_equal(dataset.load(0)[1], expected)
    assert np.array_equal(dataset.load(1)[1], train_ids)


def test_cityscapes_table_agrees_with_torchvision() -> None:
    """segdil writes the official table out itself; torchvision's copy is an independent check."""
    from torchvision.datasets import Cityscapes as TorchvisionCityscapes

    classes = TorchvisionCityscapes.classes
    evaluated = sorted((c.train_id, c.name, c.color) for c in classes if c.train_id not in (255, -1))
    assert [name for _, name, _ in evaluated] == list(CITYSCAPES_CLASSES)
    assert [colour for _, _, colour in evaluated] == list(CITYSCAPES_PALETTE)
    for c in classes:
        if c.id >= 0:  # the license plate (-1) never appears in labelIds files
            assert Cityscapes.table[c.id] == (255 if c.train_id in (255, -1) else c.train_id), c.name


# --- CamVid ---------------------------------------------------------------------------------


def test_camvid_void_becomes_255_and_test_split_works(tmp_path: Path, compose) -> None:
    masks = {"0001TP_006690": camvid_mask(0), "Seq05VD_f00000": camvid_mask(1)}
    make_camvid(tmp_path, "test", masks)
    cfg = compose("eval", ["checkpoint=x", "dataset=camvid", f"dataset.root={tmp_path}", "dataset.split=test"])
    dataset = build_dataset(cfg.dataset, cfg.dataset.split, None)
    assert dataset.class_names == CAMVID_CLASSES and len(dataset) == 2
    for index, raw in enumerate(masks.values()):
        expected = np.where(raw == 11, 255, raw)
        assert np.array_equal(dataset.load(index)[1], expected) and 11 not in dataset.load_mask(index)


def test_cache_decodes_once_and_yields_the_same_samples(tmp_path: Path, compose) -> None:
    make_camvid(tmp_path, "train", {f"f{k}": camvid_mask(k) for k in range(3)})
    cfg = compose("train", ["dataset=camvid", f"dataset.root={tmp_path}", "aug.crop_size=[16,16]"])
    transform = build_transforms(cfg.aug)[0]
    plain = build_dataset(cfg.dataset, "train", transform)
    cached = build_dataset(OmegaConf.merge(cfg.dataset, {"cache": True}), "train", transform)
    assert cached.decoded == {}  # nothing decoded before the pre-flight check has run
    build_train_loader(cached, 1, 0, seed=0, device=torch.device("cpu"))
    assert sorted(cached.decoded) == [0, 1, 2]  # the loader decoded them all up front
    first = cached.load_cached(1)
    assert cached.load_cached(1) is first and not first[0].flags.writeable  # kept read-only
    for index in range(3):
        for epoch_seed in (5, 6):  # seeded augmentation: cached or not, the same sample
            ours, theirs = cached[index, epoch_seed], plain[index, epoch_seed]
            assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert plain.decoded is None


def test_real_camvid_loads_with_its_class_names() -> None:
    root = require_data(SHARED_DATA / "camvid")
    train, val = CamVid(root, "train"), CamVid(root, "val")
    assert (len(train), len(val)) == (367, 101)
    names = "Sky Building Pole Road Pavement Tree SignSymbol Fence Car Pedestrian Bicyclist"  # SegNet's order
    assert train.class_names == tuple(names.split())
    image, mask = val.load(0)
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8 and mask.shape == (360, 480)
    check_labels([train, val])  # every label within 0..10 or 255
    seen = set()
    for index in range(0, len(train), 8):
        seen |= set(np.unique(train.load_mask(index)).tolist())
    assert seen == set(range(11)) | {255}  # all classes and void (11 -> 255) occur, nothing else


# --- Folder of images and masks -------------------------------------------------------------


def make_folder(root: Path, split: str = "train") -> dict[str, np.ndarray]:
    masks = {"roof_a": object_mask(1, border=False), "roof_b": object_mask(2)}  # 255 band: void
    for seed, (stem, mask) in enumerate(masks.items()):
        write_image(root / split / "images" / f"{stem}{'.jpg' if seed else '.png'}", seed)
        write_label(root / split / "masks" / f"{stem}.png", np.where(mask == 255, 7, mask), voc_colormap())
    return masks


def test_folder_maps_its_void_value(tmp_path: Path, compose) -> None:
    masks = make_folder(tmp_path)
    names = "dataset.class_names=[ground,roof,chimney]"
    cfg = compose("train", ["dataset=folder", f"dataset.root={tmp_path}", names, "dataset.void_value=7"])
    dataset = build_dataset(cfg.dataset, "train", None)
    assert dataset.class_names == ("ground", "roof", "chimney") and dataset.palette == voc_colormap(3)
    assert [dataset.stem(i) for i in range(2)] == ["roof_a", "roof_b"]
    for index, expected in enumerate(masks.values()):
        assert np.array_equal(dataset.load(index)[1], expected)


def test_folder_palette_and_class_names_are_validated(tmp_path: Path) -> None:
    make_folder(tmp_path)
    palette = [[0, 0, 0], [200, 10, 10]]
    assert ImageMaskFolder(tmp_path, ["a", "b"], palette=palette).palette == ((0, 0, 0), (200, 10, 10))
    with pytest.raises(ConfigError, match="dataset.palette: expected 3 RGB triples"):
        ImageMaskFolder(tmp_path, ["a", "b", "c"], palette=palette)
    with pytest.raises(ConfigError, match="dataset.class_names is empty"):
        ImageMaskFolder(tmp_path, [])


# --- Configs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target", "crop"),
    [
        ("camvid", "CamVid", [360, 480]),
        ("voc", "PascalVOC", [512, 512]),
        ("voc_aug", "PascalVOC", [512, 512]),
        ("cityscapes", "Cityscapes", [512, 1024]),
        ("folder", "ImageMaskFolder", [512, 512]),
    ],
)
def test_dataset_configs_bring_the_real_data_pipeline(compose, name: str, target: str, crop: list[int]) -> None:
    for config in ("train", "eval"):
        cfg = compose(config, [f"dataset={name}", "checkpoint=x"] if config == "eval" else [f"dataset={name}"])
        assert cfg.dataset._target_ == f"segdil.data.datasets.{target}"
        assert cfg.dataset.root.endswith(f"/{name.removesuffix('_aug')}") and cfg.dataset.split == "val"
        assert list(cfg.aug.crop_size) == crop and "scale_range" in cfg.aug
    # An explicit aug on the command line still wins over the dataset's choice.
    assert "scale_range" not in compose("train", [f"dataset={name}", "aug=basic"]).aug.train


def test_synthetic_default_keeps_basic_aug(compose) -> None:
    cfg = compose("train")
    assert cfg.dataset._target_.endswith("SyntheticShapes") and "crop_size" not in cfg.aug


def test_batches_do_not_depend_on_worker_count_or_cache(tmp_path: Path, compose) -> None:
    make_camvid(tmp_path, "train", {f"f{k}": camvid_mask(k) for k in range(6)})
    cfg = compose("train", ["dataset=camvid", f"dataset.root={tmp_path}", "aug.crop_size=[16,16]"])
    transform = build_transforms(cfg.aug)[0]

    def two_batches(workers: int, cache: bool) -> list[torch.Tensor]:
        dataset = build_dataset(OmegaConf.merge(cfg.dataset, {"cache": cache}), "train", transform)
        loader = build_train_loader(dataset, 3, workers, seed=0, device=torch.device("cpu"))
        return [tensor for batch in loader for tensor in batch]

    reference = two_batches(0, False)
    for workers, cache in ((1, False), (0, True), (1, True)):
        assert all(torch.equal(a, b) for a, b in zip(reference, two_batches(workers, cache), strict=True))
