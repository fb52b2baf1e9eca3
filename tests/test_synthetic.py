"""The built-in dataset: deterministic, labelled in range, and needing context by design."""

import numpy as np
import pytest

from segdil.data.synthetic import SHAPES, SyntheticShapes


def test_deterministic_from_seed() -> None:
    first, second = SyntheticShapes("train", seed=3), SyntheticShapes("train", seed=3)
    for index in (0, 7, 1999):
        image_a, mask_a = first.load(index)
        image_b, mask_b = second.load(index)
        assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(first.load(0)[0], SyntheticShapes("train", seed=4).load(0)[0])
    assert not np.array_equal(first.load(0)[0], SyntheticShapes("val", seed=3).load(0)[0])


def test_images_and_labels() -> None:
    dataset = SyntheticShapes("val", size=96)
    seen = set()
    for index in range(40):
        image, mask = dataset.load(index)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert mask.shape == (96, 96) and mask.dtype == np.uint8
        values = set(np.unique(mask).tolist())
        assert values <= set(range(dataset.num_classes)) | {255}
        assert 255 in values  # shape borders are ignore pixels
        seen |= values
    assert seen == set(range(dataset.num_classes)) | {255}


def test_small_and_large_squares_differ_only_in_size() -> None:
    """The two square classes share drawing code and colour distribution; their size ranges do
    not overlap, so only a receptive field wider than a small square can separate them."""
    sizes = {class_id: (low, high) for class_id, low, high in SHAPES}
    small, large = sizes[3], sizes[4]
    assert small[1] < large[0]
    dataset = SyntheticShapes("train")
    colours = {3: [], 4: []}
    for index in range(150):
        image, mask = dataset.load(index)
        for class_id in colours:
            if (mask == class_id).any():
                colours[class_id].append(image[mask == class_id].mean(axis=0))
    mean_small, mean_large = (np.mean(colours[c], axis=0) for c in (3, 4))
    assert np.abs(mean_small - mean_large).max() < 25  # same colour distribution (uniform, mean 127.5)


def test_unknown_split_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="dataset.split='holdout'"):
        SyntheticShapes("holdout")
