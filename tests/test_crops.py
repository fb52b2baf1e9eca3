"""CatMaxRatioCrop: mmsegmentation's RandomCrop(cat_max_ratio), as an albumentations transform."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from segdil.data.transforms import CROP_REDRAWS, CatMaxRatioCrop
from segdil.errors import ConfigError


def road_scene(seed: int, size: tuple[int, int] = (64, 96)) -> tuple[np.ndarray, np.ndarray]:
    """Mostly class 0 ("road"), a band of 255 (void) at the top, two small objects of 1 and 2."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(size, dtype=np.uint8)
    mask[:8] = 255
    mask[34:60, 6:30] = 1
    mask[14:34, 62:86] = 2
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8), mask


def mmseg_accepts(crop: np.ndarray, ratio: float) -> bool:
    """mmsegmentation's test, written from its description: np.unique counts without 255,
    more than one class, the largest share below the ratio."""
    labels, counts = np.unique(crop, return_counts=True)
    counts = counts[labels != 255]
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def crop_of(params: dict, mask: np.ndarray) -> np.ndarray:
    x_min, y_min, x_max, y_max = params["crop_coords"]
    return mask[y_min:y_max, x_min:x_max]


@pytest.mark.parametrize("seed", range(12))
def test_ratio_one_crops_exactly_as_random_crop(seed: int) -> None:
    image, mask = road_scene(seed, (20, 30))  # smaller than the crop: padded first
    ours = A.Compose([CatMaxRatioCrop(24, 40, pad_if_needed=True, fill=0, fill_mask=255)], seed=seed)
    theirs = A.Compose([A.RandomCrop(24, 40, pad_if_needed=True, fill=0, fill_mask=255)], seed=seed)
    a, b = ours(image=image, mask=mask), theirs(image=image, mask=mask)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])


@pytest.mark.parametrize("seed", range(40))
def test_the_crop_is_the_first_acceptable_draw_else_the_last(seed: int) -> None:
    """The same generator state gives RandomCrop's sequence of candidates: ours must return the
    first that mmsegmentation accepts, or the eleventh."""
    image, mask = road_scene(seed)
    data, params = {"image": image, "mask": mask}, {"shape": mask.shape}
    ours = CatMaxRatioCrop(32, 32, cat_max_ratio=0.75)
    plain = A.RandomCrop(32, 32)
    ours.set_random_seed(seed)
    plain.set_random_seed(seed)
    candidates = [plain.get_params_dependent_on_data(params, data) for _ in range(CROP_REDRAWS + 1)]
    accepted = [c for c in candidates[:-1] if mmseg_accepts(crop_of(c, mask), 0.75)]
    expected = accepted[0] if accepted else candidates[-1]
    assert ours.get_params_dependent_on_data(params, data)["crop_coords"] == expected["crop_coords"]


def test_fewer_crops_of_one_class() -> None:
    """Through a seeded Compose, as the datasets use it: with 0.75 far fewer crops are
    dominated by one class than with uniform crops."""
    def dominated(transform: A.BasicTransform) -> int:
        count = 0
        for seed in range(200):
            image, mask = road_scene(seed)
            out = A.Compose([transform], seed=seed)(image=image, mask=mask)
            count += not mmseg_accepts(out["mask"], 0.75)
        return count

    uniform, balanced = dominated(A.RandomCrop(32, 32)), dominated(CatMaxRatioCrop(32, 32, cat_max_ratio=0.75))
    assert uniform > 100 and balanced < uniform / 3, (uniform, balanced)


def test_void_does_not_count_as_a_class() -> None:
    """A crop of one class and void only is re-drawn: void is not a second class."""
    mask = np.full((32, 64), 255, dtype=np.uint8)
    mask[:, :32] = 0  # left half: class 0 beside void
    mask[:, 48:] = 1  # class 1 at the right, past a band of void
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    crops = [A.Compose([CatMaxRatioCrop(32, 32, cat_max_ratio=0.75)], seed=s)(image=image, mask=mask)["mask"] for s in range(30)]
    # Uniform crops hold class 1 about half the time; counting void as a class would accept
    # many crops of class 0 and void alone.
    assert sum(1 in crop for crop in crops) >= 25


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5])
def test_a_bad_ratio_is_one_line(ratio: float) -> None:
    with pytest.raises(ConfigError, match=rf"^aug.cat_max_ratio={ratio}: expected a share in \(0, 1\]"):
        CatMaxRatioCrop(8, 8, cat_max_ratio=ratio)
