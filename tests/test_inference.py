"""Inference strategies: sliding window, multi-scale and flip test-time augmentation."""

import functools

import pytest
import torch

from segdil.engine.inference import Predictor, slide_logits, window_starts
from segdil.models.backbones import build_backbone
from segdil.models.heads import fcn_head
from segdil.models.segmentor import build_segmentor


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = build_backbone(depth=10, output_stride=8, width=8, num_stages=2)
    return build_segmentor(4, backbone, functools.partial(fcn_head)).eval()


def test_window_starts_cover_the_image_and_end_flush() -> None:
    assert window_starts(100, 40, 30) == [0, 30, 60]
    assert window_starts(100, 40, 40) == [0, 40, 60]
    assert window_starts(30, 40, 10) == [0]


@pytest.mark.parametrize("crop", [(70, 90), (128, 128)])
def test_slide_with_crop_covering_the_image_equals_whole(model, crop) -> None:
    images = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        whole = model(images)
    assert torch.equal(slide_logits(model, images, 4, crop, (16, 16)), whole)


def test_slide_averages_overlapping_windows(model) -> None:
    images = torch.randn(1, 3, 40, 40)
    crop, stride = (24, 24), (16, 16)  # windows at 0 and 16 in each direction: overlap 16..24
    result = slide_logits(model, images, 4, crop, stride, batch_windows=3)
    with torch.no_grad():
        top_left = model(images[:, :, :24, :24])
        bottom_right = model(images[:, :, 16:, 16:])
    assert torch.allclose(result[:, :, :16, :16], top_left[:, :, :16, :16], atol=1e-6)
    assert torch.allclose(result[:, :, 24:, 24:], bottom_right[:, :, 8:, 8:], atol=1e-6)


def test_flip_tta_on_a_flip_symmetric_input_changes_nothing(model) -> None:
    half = torch.randn(1, 3, 48, 32)
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)  # equal to its own mirror image
    plain = Predictor(model, 4)(symmetric)
    flipped = Predictor(model, 4, flip=True)(symmetric)
    # The model is not mirror-symmetric, so its two views differ; averaging them must give a
    # result that is itself mirror-symmetric, unlike the plain prediction.
    assert torch.allclose(flipped, flipped.flip(-1), atol=1e-6)
    assert not torch.allclose(plain, plain.flip(-1), atol=1e-3)


def test_single_scale_probabilities_keep_the_logits_argmax(model) -> None:
    images = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        logits = model(images)
    probabilities = Predictor(model, 4)(images)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2, 40, 56), atol=1e-5)
    assert torch.equal(probabilities.argmax(1), logits.argmax(1))


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_multi_scale_output_shapes(model, mode) -> None:
    images = torch.randn(2, 3, 37, 53)  # odd sizes: every scale is resized back exactly
    predictor = Predictor(model, 4, mode=mode, crop=(32, 32), stride=(24, 24), scales=[0.5, 0.75, 1.25, 1.75], flip=True)
    probabilities = predictor(images)
    assert probabilities.shape == (2, 4, 37, 53)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2, 37, 53), atol=1e-5)


def test_bad_settings_are_config_errors(model) -> None:
    with pytest.raises(Exception, match="eval.mode='tiles'"):
        Predictor(model, 4, mode="tiles")
    with pytest.raises(Exception, match="needs eval.crop"):
        Predictor(model, 4, mode="slide")
    with pytest.raises(Exception, match="eval.scales"):
        Predictor(model, 4, scales=[0.0])
