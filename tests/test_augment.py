"""aug=seg: image and mask stay aligned, padding is ignore, masks are never interpolated."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy import ndimage

from segdil.data.labels import CAMVID_PALETTE
from segdil.data.transforms import rescale
from segdil.errors import ConfigError

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
COLOURS = np.array(CAMVID_PALETTE, dtype=np.float64)  # 11 colours at least 40 apart, none black


def colour_coded(seed: int, size: tuple[int, int] = (60, 80)) -> tuple[np.ndarray, np.ndarray]:
    """A mask of 10x10 blocks of classes 0..10 and an image that shows each class in its colour."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(COLOURS), size=(size[0] // 10, size[1] // 10))
    mask = np.kron(blocks, np.ones((10, 10), dtype=np.int64)).astype(np.uint8)
    return COLOURS[mask].astype(np.uint8), mask


def pixels(image_tensor) -> np.ndarray:
    """Undo ToTensorV2 and the ImageNet normalisation: HxWx3 in 0..255."""
    return (image_tensor.permute(1, 2, 0).numpy() * STD + MEAN) * 255


def pipelines(compose, *overrides: str) -> tuple[A.Compose, A.Compose]:
    cfg = compose("train", ["aug=seg", *overrides])
    return instantiate(cfg.aug.train), instantiate(cfg.aug.val)


def test_train_transforms_keep_image_and_mask_aligned(compose) -> None:
    train, _ = pipelines(compose, "aug.crop_size=[48,64]")
    padded_draws = 0
    for seed in range(30):
        train.set_random_seed(seed)
        image, mask = colour_coded(seed)
        out = train(image=image, mask=mask)
        got, got_mask = pixels(out["image"]), np.asarray(out["mask"])
        assert out["image"].shape == (3, 48, 64) and got_mask.shape == (48, 64)
        # Two pixels away from class edges (bilinear resampling at up to 2x blends colours over
        # two pixels, also with rows just outside the crop), each pixel's colour is its mask
        # class's colour; padding is black.
        labelled = got_mask != 255
        interior = ndimage.minimum_filter(got_mask, 5) == ndimage.maximum_filter(got_mask, 5)
        interior[[0, 1, -2, -1], :] = interior[:, [0, 1, -2, -1]] = False
        nearest = np.linalg.norm(got[:, :, None, :] - COLOURS[None, None], axis=-1).argmin(axis=-1)
        assert (interior & labelled).sum() > 100
        assert np.array_equal(nearest[interior & labelled], got_mask[interior & labelled])
        assert np.all(np.abs(got[~labelled]) < 1.0)
        padded_draws += (~labelled).any()
    assert padded_draws  # scales below 0.8 needed padding to reach the crop


def test_masks_are_only_resampled_by_nearest_neighbour(compose) -> None:
    train, _ = pipelines(compose, "aug.crop_size=[48,64]")
    _, mask = colour_coded(0)
    mask = np.where(mask % 2, 10, 0).astype(np.uint8)  # any interpolation would create 1..9
    for seed in range(20):
        train.set_random_seed(seed)
        out = train(image=np.zeros((*mask.shape, 3), np.uint8), mask=mask)
        assert set(np.unique(out["mask"]).tolist()) <= {0, 10, 255}


def test_padding_is_black_image_and_ignored_mask(compose) -> None:
    train, _ = pipelines(compose, "aug.crop_size=[48,64]", "aug.scale_range=[0.25,0.25]")
    image, mask = colour_coded(0, size=(80, 120))  # rescaled to 20x30, padded to 48x64
    out = train(image=image, mask=mask)
    got, got_mask = pixels(out["image"]), np.asarray(out["mask"])
    padded = got_mask == 255
    assert padded.sum() == 48 * 64 - 20 * 30
    assert np.array_equal(padded, np.abs(got).max(axis=-1) < 1.0)  # exactly the black pixels


@pytest.mark.parametrize("option", ["jitter_p", "blur_p", "noise_p"])
def test_photometric_augmentation_leaves_the_geometry_alone(compose, option: str) -> None:
    plain, _ = pipelines(compose, "aug.crop_size=[32,32]")
    photometric, _ = pipelines(compose, "aug.crop_size=[32,32]", f"aug.{option}=1.0")
    image, mask = colour_coded(3)
    for seed in range(5):
        plain.set_random_seed(seed)
        photometric.set_random_seed(seed)
        a, b = plain(image=image, mask=mask), photometric(image=image, mask=mask)
        assert np.array_equal(a["mask"], b["mask"]) and not np.allclose(a["image"].numpy(), b["image"].numpy())


def test_val_is_normalisation_only_or_a_fixed_rescale(compose) -> None:
    image, mask = colour_coded(1)
    _, val = pipelines(compose)
    out = val(image=image, mask=mask)
    assert np.allclose(pixels(out["image"]), image, atol=1e-3) and np.array_equal(out["mask"], mask)
    _, val = pipelines(compose, "aug.val_scale=0.5")
    out = val(image=image, mask=mask)
    assert out["image"].shape == (3, 30, 40) and np.array_equal(out["mask"], mask[::2, ::2])


def test_rescale_keeps_the_aspect_ratio_and_checks_its_range() -> None:
    transform = A.Compose([rescale([0.5, 2.0])], seed=0)
    for _ in range(10):
        shape = transform(image=np.zeros((60, 80, 3), np.uint8))["image"].shape
        assert 30 <= shape[0] <= 120 and shape[1] == pytest.approx(shape[0] * 4 / 3, abs=1)
    assert isinstance(rescale([1, 1]), A.NoOp)
    with pytest.raises(ConfigError, match=r"scale range \[2, 1\]"):
        rescale([2, 1])


def test_basic_aug_still_builds(compose) -> None:
    train, val = (instantiate(node) for node in (compose("train").aug.train, compose("train").aug.val))
    image, mask = colour_coded(0, size=(40, 40))
    assert train(image=image, mask=mask)["image"].shape == val(image=image, mask=mask)["image"].shape == (3, 40, 40)


def test_blur_and_noise_off_by_default_give_todays_samples(compose) -> None:
    cfg = compose("train", ["aug=seg", "aug.crop_size=[32,32]", "aug.jitter_p=0.5"])
    with_options = instantiate(cfg.aug.train)
    without = cfg.aug.train.copy()
    without.transforms = [t for t in cfg.aug.train.transforms if "Gauss" not in t._target_]
    without = instantiate(without)
    assert len(without.transforms) == len(with_options.transforms) - 2
    image, mask = colour_coded(4)
    for seed in range(5):
        with_options.set_random_seed(seed)
        without.set_random_seed(seed)
        a, b = with_options(image=image, mask=mask), without(image=image, mask=mask)
        assert np.array_equal(a["mask"], b["mask"]) and np.array_equal(a["image"].numpy(), b["image"].numpy())


def test_seg_photometric_is_seg_with_the_three_levers_on(compose) -> None:
    """aug=seg_photometric also wins over the dataset's choice of seg and keeps its crop size."""
    seg = compose("train", ["dataset=camvid"]).aug
    photometric = compose("train", ["dataset=camvid", "aug=seg_photometric"]).aug
    assert (photometric.jitter_p, photometric.blur_p, photometric.noise_p) == (0.8, 0.3, 0.3)
    assert photometric.crop_size == seg.crop_size == [360, 480]
    instantiated = [type(t).__name__ for t in instantiate(photometric.train).transforms]
    assert instantiated == [type(t).__name__ for t in instantiate(seg.train).transforms]
    assert without_probabilities(photometric) == without_probabilities(seg)


def without_probabilities(aug) -> dict:
    """An aug config, unresolved (its pipelines still read ${aug.jitter_p} etc.), less its *_p keys."""
    return {key: value for key, value in OmegaConf.to_container(aug).items() if not key.endswith("_p")}
