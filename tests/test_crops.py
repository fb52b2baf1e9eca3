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


MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
SMALL = ["aug=seg", "aug.scale_range=[1.0,1.0]", "aug.crop_size=[32,40]"]  # 20x30 images: always padded


def padded_crop(compose, *overrides: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 20x30 image and mask through aug.train padded to 32x40: (normalised image HxWx3, mask,
    the image and mask that went in)."""
    from hydra.utils import instantiate

    train = instantiate(compose("train", [*SMALL, *overrides]).aug.train)
    rng = np.random.default_rng(0)
    image, mask = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), rng.integers(0, 5, (20, 30), dtype=np.uint8)
    train.set_random_seed(0)
    out = train(image=image, mask=mask)
    return out["image"].permute(1, 2, 0).numpy(), np.asarray(out["mask"]), image, mask


def test_the_aug_config_pads_black_by_default(compose) -> None:
    normalised, mask, _, _ = padded_crop(compose)
    border = mask == 255
    assert border.sum() == 32 * 40 - 20 * 30
    np.testing.assert_allclose(normalised[border], np.broadcast_to(-MEAN / STD, (border.sum(), 3)), atol=1e-5)


def test_the_mean_pixel_is_zero_once_normalised(compose) -> None:
    normalised, mask, _, _ = padded_crop(compose, "aug.pad_fill=[123.675,116.28,103.53]")
    border = mask == 255
    assert border.sum() == 32 * 40 - 20 * 30
    assert np.abs(normalised[border]).max() < 0.03  # uint8 rounding of the mean
    assert np.abs(normalised[~border]).mean() > 0.3


def test_reflect_mirrors_image_and_labels(compose) -> None:
    normalised, mask, image, labels = padded_crop(compose, "aug.pad_border_mode=4")
    widths = ((6, 6), (5, 5))  # centred padding from 20x30 to 32x40; numpy's reflect is BORDER_REFLECT_101
    expected_mask = np.pad(labels, widths, mode="reflect")
    expected_image = np.pad(image, (*widths, (0, 0)), mode="reflect").astype(np.float64)
    flipped = not np.array_equal(mask, expected_mask)  # the pipeline's horizontal flip may have fired
    if flipped:
        expected_mask, expected_image = expected_mask[:, ::-1], expected_image[:, ::-1]
    assert np.array_equal(mask, expected_mask) and 255 not in mask
    np.testing.assert_allclose((normalised * STD + MEAN) * 255, expected_image, atol=0.01)


def test_cat_max_ratio_reaches_the_crop(compose) -> None:
    from hydra.utils import instantiate

    default, balanced = (instantiate(compose("train", [*SMALL, *extra]).aug.train) for extra in ([], ["aug.cat_max_ratio=0.75"]))
    crops = [next(t for t in pipeline.transforms if isinstance(t, CatMaxRatioCrop)) for pipeline in (default, balanced)]
    assert [crop.cat_max_ratio for crop in crops] == [1.0, 0.75]
