"""A procedural dataset so that segdil trains on a fresh machine with nothing downloaded.

Shapes (discs, triangles, small and large squares) in random colours on a smooth, noisy
background. Small and large squares are drawn alike: inside any window smaller than a small
square they cannot be told apart, only a receptive field that sees the whole shape can. That is
the property the context module exists for. Each image is a pure function of (seed, split,
index), so splits are deterministic and made in memory, with no files.
"""

from __future__ import annotations

import numpy as np

from segdil.data.base import IGNORE_INDEX, SegmentationDataset, Transform
from segdil.data.labels import voc_colormap
from segdil.errors import ConfigError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# (class id, min size, max size) in pixels at 128x128, scaled with the image size.
# For squares the size is the side, for discs the radius, for triangles the side.
SHAPES = (
    (1, 9, 18),  # disc radius
    (2, 22, 40),  # triangle side
    (3, 8, 14),  # small square side
    (4, 30, 46),  # large square side
)


class SyntheticShapes(SegmentationDataset):
    """Random shapes on textured backgrounds; see the module docstring for why."""

    class_names = ("background", "disc", "triangle", "small_square", "large_square")
    palette = voc_colormap(len(class_names))

    def __init__(
        self,
        split: str = "train",
        transform: Transform | None = None,
        size: int = 128,
        lengths: dict[str, int] | None = None,
        seed: int = 0,
        shapes_per_image: tuple[int, int] = (3, 6),
        noise_std: float = 18.0,
        cache: bool = False,
    ) -> None:
        super().__init__(split, transform, cache)
        lengths = dict(lengths or {"train": 2000, "val": 200, "test": 200})
        if split not in SPLIT_CODES or split not in lengths:
            raise ConfigError(f"dataset.split={split!r}: expected one of {sorted(lengths)}")
        self.size, self.length, self.seed = size, int(lengths[split]), seed
        self.shapes_per_image, self.noise_std = tuple(shapes_per_image), noise_std

    def __len__(self) -> int:
        return self.length

    def stem(self, index: int) -> str:
        return f"{self.split}_{index:05d}"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, SPLIT_CODES[self.split], index))
        size = self.size
        image = self._background(rng)
        label = np.zeros((size, size), dtype=np.uint8)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        occupied: list[tuple[float, float, float]] = []  # (cy, cx, radius) of placed shapes
        for _ in range(rng.integers(self.shapes_per_image[0], self.shapes_per_image[1] + 1)):
            class_id, low, high = SHAPES[rng.integers(len(SHAPES))]
            extent = rng.uniform(low, high) * size / 128.0
            inside = self._place(rng, class_id, extent, yy, xx, occupied)
            if inside is None:
                continue
            colour = rng.uniform(0, 255, size=3)
            image[inside] = colour + rng.normal(0, self.noise_std, size=(int(inside.sum()), 3))
            label[inside] = class_id
        label[self._borders(label)] = IGNORE_INDEX
        return np.clip(image, 0, 255).astype(np.uint8), label

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A smooth colour field (bilinear upsampling of a 4x4 grid) plus per-pixel noise."""
        size = self.size
        coarse = rng.uniform(0, 255, size=(4, 4, 3))
        grid = np.linspace(0, 3, size)
        low = np.floor(grid).astype(int).clip(0, 2)
        frac = (grid - low)[:, None]
        rows = coarse[low] * (1 - frac[:, :, None]) + coarse[low + 1] * frac[:, :, None]
        field = rows[:, low] * (1 - frac.T[:, :, None]) + rows[:, low + 1] * frac.T[:, :, None]
        return field + rng.normal(0, self.noise_std, size=(size, size, 3))

    def _place(
        self,
        rng: np.random.Generator,
        class_id: int,
        extent: float,
        yy: np.ndarray,
        xx: np.ndarray,
        occupied: list[tuple[float, float, float]],
    ) -> np.ndarray | None:
        """The mask of a new shape that does not touch the ones already placed, or None."""
        radius = extent if class_id == 1 else extent / np.sqrt(2) if class_id in (3, 4) else extent / np.sqrt(3)
        for _ in range(20):
            cy, cx = rng.uniform(radius, self.size - radius, size=2)
            if all(np.hypot(cy - oy, cx - ox) > radius + orad + 3 for oy, ox, orad in occupied):
                occupied.append((cy, cx, radius))
                return _shape_mask(class_id, extent, cy, cx, rng.uniform(0, 2 * np.pi), yy, xx)
        return None

    @staticmethod
    def _borders(label: np.ndarray) -> np.ndarray:
        """Pixels whose 4-neighbourhood holds another class: the ambiguous band, set to ignore."""
        border = np.zeros(label.shape, dtype=bool)
        border[1:] |= label[1:] != label[:-1]
        border[:-1] |= label[:-1] != label[1:]
        border[:, 1:] |= label[:, 1:] != label[:, :-1]
        border[:, :-1] |= label[:, :-1] != label[:, 1:]
        return border


def _shape_mask(
    class_id: int, extent: float, cy: float, cx: float, angle: float, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Boolean mask of a disc (radius), an equilateral triangle or a square (side), rotated."""
    dy, dx = yy - cy, xx - cx
    if class_id == 1:
        return dy**2 + dx**2 <= extent**2
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if class_id in (3, 4):
        return (np.abs(u) <= extent / 2) & (np.abs(v) <= extent / 2)
    # Triangle: inside all three half-planes whose normals point at 90, 210 and 330 degrees.
    inradius = extent / (2 * np.sqrt(3))
    normals = np.deg2rad([90.0, 210.0, 330.0])
    return np.all([np.cos(n) * u + np.sin(n) * v <= inradius for n in normals], axis=0)
