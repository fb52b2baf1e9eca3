"""eval.pad_to: pad to a fixed size (bottom and right, the mean pixel), predict, crop back;
only the image's own pixels are scored."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from segdil.engine.evaluator import evaluate
from segdil.engine.inference import Predictor
from segdil.errors import ConfigError
from segdil.models.backbones import build_backbone
from segdil.models.heads import deeplabv3_head
from segdil.models.segmentor import build_segmentor


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """DeepLabv3's image pooling sees the whole input, so padding changes every prediction."""
    torch.manual_seed(0)
    backbone = build_backbone(depth=10, output_stride=8, width=8, num_stages=2)
    return build_segmentor(4, backbone, functools.partial(deeplabv3_head)).eval()


def test_padded_prediction_is_the_model_on_the_padded_image_cropped(model) -> None:
    images = torch.randn(2, 3, 40, 56)
    padded = Predictor(model, 4, pad_to=[64, 72])(images)
    with torch.no_grad():
        expected = model(F.pad(images, (0, 16, 0, 24))).softmax(dim=1)[..., :40, :56]
    assert padded.shape == (2, 4, 40, 56)
    torch.testing.assert_close(padded, expected)
    assert not torch.allclose(padded, Predictor(model, 4)(images), atol=1e-4)


def test_padding_composes_with_scales_and_flip(model) -> None:
    images = torch.randn(1, 3, 40, 56)
    padded = Predictor(model, 4, scales=[0.5, 1.0], flip=True, pad_to=[64, 64])(images)
    unpadded_run = Predictor(model, 4, scales=[0.5, 1.0], flip=True)(F.pad(images, (0, 8, 0, 24)))
    torch.testing.assert_close(padded, unpadded_run[..., :40, :56])


def test_a_side_longer_than_pad_to_is_left_as_it_is(model) -> None:
    images = torch.randn(1, 3, 40, 56)
    torch.testing.assert_close(Predictor(model, 4, pad_to=[32, 32])(images), Predictor(model, 4)(images))
    with torch.no_grad():
        expected = model(F.pad(images, (0, 0, 0, 8))).softmax(dim=1)[..., :40, :]
    torch.testing.assert_close(Predictor(model, 4, pad_to=[48, 32])(images), expected)


def test_only_real_pixels_are_scored(model) -> None:
    """The confusion matrix counts each labelled pixel of the images once, padding never."""
    images = torch.randn(3, 3, 40, 56)
    masks = torch.randint(0, 4, (3, 40, 56))
    masks[:, :4] = 255
    loader = DataLoader(TensorDataset(images, masks), batch_size=2)
    confusion = evaluate(Predictor(model, 4, pad_to=[64, 64]), loader, 4, torch.device("cpu"), progress=False)
    assert int(confusion.matrix.sum()) == int((masks != 255).sum())


@pytest.mark.parametrize("pad_to", [[0, 64], [64], [64, 64, 3]])
def test_a_bad_size_is_one_line(model, pad_to: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"^eval.pad_to=.*: expected null or \[height, width\], whole numbers >= 1$"):
        Predictor(model, 4, pad_to=pad_to)
