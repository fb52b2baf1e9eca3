"""Data sets read in their official on-disk layouts: Pascal VOC 2012 (+ SBD), Cityscapes,
CamVid (SegNet) and a folder of images and masks for users' own data.

torchvision's VOCSegmentation and Cityscapes list the same files, but they reject the
`train_aug` split, ignore `*_labelTrainIds.png` and report a missing tree without its path
(Cityscapes also unpacks the official zip archives it finds in the root). So the listing is
ours: a few lines per layout, and every problem is a DataError naming the file and the layout.
(The tests check that our VOC listing equals torchvision's.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from segdil.data.base import IGNORE_INDEX, SegmentationDataset, Transform
from segdil.data.labels import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CAMVID_VOID,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_IDS,
    CITYSCAPES_MAX_LABEL_ID,
    CITYSCAPES_PALETTE,
    RGB,
    VOC_CLASSES,
    VOC_PALETTE,
    voc_colormap,
)
from segdil.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# What PIL raises for missing, truncated, foreign or oversized files.
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@contextmanager
def pil_errors(kind: str, path: Path) -> Iterator[None]:
    """What PIL raises for a bad file becomes a DataError: `cannot read <kind> <path>: <reason>`."""
    try:
        yield
    except _PIL_ERRORS as error:
        raise DataError(f"cannot read {kind} {path}: {error}") from None


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 HxWx3 (grey and palette images are converted), or a DataError naming the file."""
    with pil_errors("image", path), Image.open(path) as image:
        return np.array(image if image.mode == "RGB" else image.convert("RGB"))


def verified_image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file known to be whole, without decoding a PNG: PIL's verify
    reads every chunk and its checksum, which finds truncation and corruption at a small part
    of a decode's cost. Other formats are decoded (verify does not read a JPEG's data)."""
    with pil_errors("image", path), Image.open(path) as image:
        if image.format == "PNG":
            image.verify()
        else:
            image.load()
        return image.size


def read_label(path: Path) -> np.ndarray:
    """uint8 HxW class indices from a one-channel (L) or palette (P) image; the palette is not
    applied, the index is the class."""
    with pil_errors("label", path), Image.open(path) as label:
        if label.mode not in ("L", "P"):
            raise DataError(f"label {path} has mode {label.mode}: expected one channel of class indices (mode L or P)")
        return np.array(label)


def write_label(path: Path, mask: np.ndarray, palette: Sequence[RGB]) -> None:
    """Save a uint8 HxW mask as a palette PNG: the pixel value is the class index, and image
    viewers show the palette's colours (the encoding of VOC's SegmentationClass)."""
    label = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
    label.putpalette([value for colour in palette for value in colour])  # L -> P, indices kept
    path.parent.mkdir(parents=True, exist_ok=True)
    label.save(path)


def lookup_table(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry uint8 table: identity except for `mapping`. Raw values with no meaning stay
    as they are, so that the label check reports them instead of hiding them as ignore."""
    table = np.arange(256, dtype=np.uint8)
    for raw, mapped in mapping.items():
        table[raw] = mapped
    return table


class FileDataset(SegmentationDataset):
    """One split of (image file, label file) pairs. Subclasses find the pairs in their layout
    (`find_pairs`), describe it in one line (`layout`, with `{root}` and `{split}`) and map
    raw label values (`table`); reading, size checks and error messages are shared here."""

    layout = "{root}"
    table: np.ndarray | None = None  # raw label value -> train id (void -> 255); None: as stored

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str] = "train",
        transform: Transform | None = None,
        cache: bool = False,
    ) -> None:
        parts = [split] if isinstance(split, str) else list(split)
        if not parts or not all(isinstance(part, str) for part in parts):
            raise ConfigError(f"dataset split {split!r}: expected a split name or a list of names, e.g. [train, val]")
        super().__init__("+".join(parts), transform, cache)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise self.layout_error(f"dataset.root={self.root}: no such folder")
        pairs = [pair for part in parts for pair in self.find_pairs(part)]
        if not pairs:
            raise self.layout_error(f"dataset.split={self.split}: no images found")
        if len({image for image, _ in pairs}) < len(pairs):
            raise ConfigError(f"dataset split {self.split}: the splits overlap (an image is listed twice)")
        unlabelled = [(image, label) for image, label in pairs if not label.is_file()]
        if unlabelled:
            image, label = unlabelled[0]
            raise DataError(
                f"image {image} has no label (expected {label}); "
                f"{len(unlabelled)} of {len(pairs)} {split} images lack one"
            )
        self.images = [image for image, _ in pairs]
        self.labels = [label for _, label in pairs]

    def find_pairs(self, split: str) -> list[tuple[Path, Path]]:
        """(image, expected label path) for every image of `split`, in a stable order."""
        raise NotImplementedError

    def label_table(self, label_path: Path) -> np.ndarray | None:
        """The table for one label file (the same `table` for all, unless a layout mixes encodings)."""
        return self.table

    def layout_error(self, message: str) -> DataError:
        return DataError(f"{message}; expected {self.layout.format(root=self.root, split=self.split)}")

    def __len__(self) -> int:
        return len(self.images)

    def stem(self, index: int) -> str:
        return self.images[index].stem

    def describe(self, index: int) -> str:
        return str(self.labels[index])

    def load_mask(self, index: int) -> np.ndarray:
        path = self.labels[index]
        table = self.label_table(path)
        mask = read_label(path)
        return mask if table is None else table[mask]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = read_image(self.images[index]), self.load_mask(index)
        self._check_size(index, (image.shape[1], image.shape[0]), mask)
        return image, mask

    def checked_mask(self, index: int) -> np.ndarray:
        mask = self.load_mask(index)
        self._check_size(index, verified_image_size(self.images[index]), mask)
        return mask

    def _check_size(self, index: int, image_size: tuple[int, int], mask: np.ndarray) -> None:
        """A DataError naming both files unless the image (width, height) matches the mask."""
        width, height = image_size
        if mask.shape != (height, width):
            raise DataError(
                f"label {self.labels[index]} is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{self.images[index]} is {width}x{height}"
            )

    def exclude(self, indices: Sequence[int]) -> None:
        dropped = set(indices)
        kept = [index for index in range(len(self)) if index not in dropped]
        self.images = [self.images[index] for index in kept]
        self.labels = [self.labels[index] for index in kept]
        if self.decoded is not None:
            self.decoded = {new: self.decoded[old] for new, old in enumerate(kept) if old in self.decoded}


class PascalVOC(FileDataset):
    """Pascal VOC 2012 in the VOCdevkit layout: ids from `ImageSets/Segmentation/<split>.txt`,
    palette PNG labels whose index is the class; the 255 object borders stay ignore. With
    `label_dir=SegmentationClassAug`, `split=train_aug` reads the SBD-augmented set that
    scripts/prepare_voc_sbd.py writes."""

    class_names = VOC_CLASSES
    palette = VOC_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        label_dir: str = "SegmentationClass",
        cache: bool = False,
    ) -> None:
        self.label_dir = label_dir
        self.layout = (
            "{root}/VOCdevkit/VOC2012/ holding JPEGImages/<id>.jpg, "
            f"{label_dir}/<id>.png and ImageSets/Segmentation/{{split}}.txt"
        )
        super().__init__(root, split, transform, cache)

    def find_pairs(self, split: str) -> list[tuple[Path, Path]]:
        voc = self.root / "VOCdevkit" / "VOC2012"
        list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise self.layout_error(f"dataset.split={split}: {list_file} not found")
        ids = list_file.read_text().split()
        pairs = [(voc / "JPEGImages" / f"{i}.jpg", voc / self.label_dir / f"{i}.png") for i in ids]
        missing = [image for image, _ in pairs if not image.is_file()]
        if missing:
            raise DataError(
                f"image {missing[0]} listed in {list_file} not found; {len(missing)} of {len(ids)} are missing"
            )
        return pairs


class Cityscapes(FileDataset):
    """Cityscapes fine annotations. `*_gtFine_labelIds.png` is mapped to the 19 train ids with
    the official table (every other id -> 255); a `*_gtFine_labelTrainIds.png` beside it (as
    cityscapesScripts' createTrainIdLabelImgs writes) is used as it is."""

    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    layout = (
        "{root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png with labels "
        "{root}/gtFine/{split}/<city>/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png)"
    )
    # Label ids 0..33 -> train ids 0..18, or 255 for the ids not evaluated.
    table = lookup_table(
        {label_id: IGNORE_INDEX for label_id in range(CITYSCAPES_MAX_LABEL_ID + 1)}
        | {label_id: train_id for train_id, label_id in enumerate(CITYSCAPES_LABEL_IDS)}
    )
    # Train id -> label id, for predictions in the official format (eval.format=cityscapes).
    train_id_to_id = CITYSCAPES_LABEL_IDS

    def stem(self, index: int) -> str:
        """`<city>_<seq>_<frame>`, the name the official evaluation matches predictions by."""
        return self.images[index].stem.removesuffix("_leftImg8bit")

    def find_pairs(self, split: str) -> list[tuple[Path, Path]]:
        pairs = []
        for image in sorted((self.root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
            stem = image.name.removesuffix("_leftImg8bit.png")
            folder = self.root / "gtFine" / split / image.parent.name
            train_ids = folder / f"{stem}_gtFine_labelTrainIds.png"
            pairs.append((image, train_ids if train_ids.is_file() else folder / f"{stem}_gtFine_labelIds.png"))
        return pairs

    def label_table(self, label_path: Path) -> np.ndarray | None:
        return None if label_path.name.endswith("_labelTrainIds.png") else self.table


def camvid_sequence(path: Path) -> str:
    """The street sequence a CamVid frame comes from: its file name's prefix (`0006R0_f00930.png`)."""
    return path.name.split("_", 1)[0]


class CamVid(FileDataset):
    """CamVid in SegNet's 11-class layout: `<split>/*.png` with labels of the same name in
    `<split>annot/`; the void label 11 becomes 255.

    `holdout` names a street sequence (0001TP, 0006R0, 0016E5 in SegNet's train and val) that is
    removed from every split and becomes the split `holdout`, gathered from all split folders.
    SegNet's val is 101 frames of 0016E5, whose other 204 frames are in train: it rewards
    memorising that street, while a held-out sequence measures what a user gets on new streets.
    """

    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    layout = "{root}/{split}/*.png with labels {root}/{split}annot/*.png (SegNet layout: train, val, test)"
    table = lookup_table({CAMVID_VOID: IGNORE_INDEX})
    folders = ("train", "val", "test")  # SegNet's splits; `holdout` gathers its frames from these

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str] = "train",
        transform: Transform | None = None,
        cache: bool = False,
        holdout: str | None = None,
    ) -> None:
        if holdout is not None and not isinstance(holdout, str):
            raise ConfigError(f"dataset.holdout={holdout!r}: expected a sequence name such as 0006R0; quote it in YAML ('0016E5' reads as a number)")
        self.holdout = holdout
        super().__init__(root, split, transform, cache)

    def find_pairs(self, split: str) -> list[tuple[Path, Path]]:
        if split == "holdout":
            if not self.holdout:
                raise ConfigError("dataset.split=holdout needs dataset.holdout=<sequence>, e.g. 0006R0")
            pairs = [pair for folder in self.folders for pair in self._folder_pairs(folder)]
            held = [(image, label) for image, label in pairs if camvid_sequence(image) == self.holdout]
            if not held:
                found = sorted({camvid_sequence(image) for image, _ in pairs})
                raise ConfigError(f"dataset.holdout={self.holdout}: no frame of that sequence under {self.root}; found {found}")
            return held
        return [(image, label) for image, label in self._folder_pairs(split) if camvid_sequence(image) != self.holdout]

    def _folder_pairs(self, folder: str) -> list[tuple[Path, Path]]:
        images = sorted((self.root / folder).glob("*.png"))
        return [(image, self.root / f"{folder}annot" / image.name) for image in images]


class ImageMaskFolder(FileDataset):
    """Users' own data: `<split>/images/*` with `<split>/masks/<stem><mask_suffix>` holding class
    indices (mode L or P). Class names come from the config; the palette defaults to VOC's
    colour map; `void_value`, if set, is mapped to 255."""

    layout = "{root}/{split}/images/<stem>.<jpg|png|...> with masks {root}/{split}/masks/<stem>.png"

    def __init__(
        self,
        root: str | Path,
        class_names: Sequence[str],
        split: str = "train",
        transform: Transform | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        void_value: int | None = None,
        mask_suffix: str = ".png",
        cache: bool = False,
    ) -> None:
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise ConfigError("dataset.class_names is empty: list the names of the classes, index 0 first")
        self.palette: tuple[RGB, ...] = (
            tuple(tuple(int(v) for v in colour) for colour in palette) if palette else voc_colormap(self.num_classes)
        )
        if len(self.palette) != self.num_classes or any(len(colour) != 3 for colour in self.palette):
            raise ConfigError(f"dataset.palette: expected {self.num_classes} RGB triples, one per class")
        if void_value is not None and not 0 <= void_value <= 255:
            raise ConfigError(f"dataset.void_value={void_value}: expected a label value 0..255 or null")
        self.table = None if void_value is None else lookup_table({void_value: IGNORE_INDEX})
        self.mask_suffix = mask_suffix
        super().__init__(root, split, transform, cache)

    def find_pairs(self, split: str) -> list[tuple[Path, Path]]:
        image_dir, mask_dir = self.root / split / "images", self.root / split / "masks"
        images = sorted(p for p in image_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(image, mask_dir / f"{image.stem}{self.mask_suffix}") for image in images]
