"""Loss: plain, class-weighted and OHEM cross entropy against direct computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segdil.losses import SegmentationLoss, median_frequency_weights


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 8, generator=generator)
    target = torch.randint(0, 4, (2, 8, 8), generator=generator)
    target[:, 0] = 255
    return logits, target


def test_plain_and_weighted_match_torch_cross_entropy() -> None:
    logits, target = batch()
    assert torch.allclose(SegmentationLoss()(logits, target), F.cross_entropy(logits, target, ignore_index=255))
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    expected = F.cross_entropy(logits, target, weight=weights, ignore_index=255)
    assert torch.allclose(SegmentationLoss(weights)(logits, target), expected)


def test_ohem_keeps_hard_pixels_only() -> None:
    logits, target = batch(1)
    valid = target != 255
    probability = logits.softmax(1).gather(1, target.clamp(max=3).unsqueeze(1)).squeeze(1)
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    # Threshold 1.0 keeps every valid pixel: plain cross entropy.
    assert torch.allclose(SegmentationLoss(ohem_thresh=1.0, ohem_min_kept=1)(logits, target), per_pixel[valid].mean())
    # Threshold 0.3 keeps pixels with true-class probability <= 0.3 (more than min_kept here).
    hard = valid & (probability <= 0.3)
    assert 5 < int(hard.sum()) < int(valid.sum())
    assert torch.allclose(SegmentationLoss(ohem_thresh=0.3, ohem_min_kept=5)(logits, target), per_pixel[hard].mean())
    # Threshold 0 but min_kept 10: the 10 hardest valid pixels.
    hardest = per_pixel[valid].sort(descending=True).values[:10]
    assert torch.allclose(SegmentationLoss(ohem_thresh=0.0, ohem_min_kept=10)(logits, target), hardest.mean())


def test_all_ignored_gives_zero_loss_with_gradient() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = SegmentationLoss()(logits, torch.full((1, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_median_frequency_by_hand() -> None:
    # Image A (4 px): class 0 x3, class 1 x1. Image B (4 px): class 0 x2, class 2 x1, one ignored.
    a = np.array([[0, 0], [0, 1]], dtype=np.uint8)
    b = np.array([[0, 0], [2, 255]], dtype=np.uint8)
    # f0 = 5/8 (in both images), f1 = 1/4 (image A only), f2 = 1/4 (image B only); median 1/4.
    weights = median_frequency_weights([a, b], num_classes=4)
    assert weights.tolist() == pytest.approx([0.25 / 0.625, 1.0, 1.0, 0.0])


def test_label_smoothing_matches_torch_with_and_without_class_weights() -> None:
    logits, target = batch(2)
    for weights in (None, torch.tensor([0.5, 1.0, 2.0, 4.0])):
        expected = F.cross_entropy(logits, target, weight=weights, ignore_index=255, label_smoothing=0.1)
        smoothed = SegmentationLoss(weights, label_smoothing=0.1)(logits, target)
        assert torch.allclose(smoothed, expected)
        assert not torch.allclose(smoothed, SegmentationLoss(weights)(logits, target))


def test_label_smoothing_out_of_range_is_a_config_error(compose) -> None:
    from segdil.engine.builders import build_loss
    from segdil.errors import ConfigError

    cfg = compose("train", ["loss.label_smoothing=1.5"])
    with pytest.raises(ConfigError, match=r"loss.label_smoothing=1.5: expected a value in \[0, 1\)"):
        build_loss(cfg.loss, None)


def test_average_all_divides_by_every_pixel_as_mmsegmentation_does() -> None:
    """mmsegmentation's default (avg_non_ignore=False): the weighted per-pixel losses, ignored
    pixels counting as 0, averaged over all pixels."""
    logits, target = batch(3)
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    per_pixel = F.cross_entropy(logits, target, weight=weights, ignore_index=255, reduction="none")
    assert torch.allclose(SegmentationLoss(weights, average="all")(logits, target), per_pixel.sum() / target.numel())
    assert SegmentationLoss(average="all")(logits, target) < SegmentationLoss()(logits, target)  # 1/8 of pixels ignored


def test_the_loss_is_chosen_by_its_config_target(compose, tmp_path) -> None:
    """configs/loss names its class in _target_: another loss is one class and one config."""
    from segdil.engine.builders import build_loss
    from segdil.errors import ConfigError
    from segdil.losses import WithAuxiliary

    cfg = compose("train", ["loss.average=all", "loss.ohem_thresh=0.7"])
    loss = build_loss(cfg.loss, None)
    assert isinstance(loss, SegmentationLoss) and loss.average == "all" and loss.ohem_thresh == 0.7
    cfg.loss = {"_target_": "torch.nn.CrossEntropyLoss", "ignore_index": 255}
    plain = build_loss(cfg.loss, None, aux_weight=0.5)
    assert isinstance(plain, WithAuxiliary) and isinstance(plain.loss, torch.nn.CrossEntropyLoss)
    logits, target = batch()
    out = {"out": logits, "aux": logits}
    assert torch.allclose(plain(out, target), 1.5 * F.cross_entropy(logits, target, ignore_index=255))
    with pytest.raises(ConfigError, match=r"loss.average='pixels': expected one of \['valid', 'all'\]"):
        build_loss(compose("train", ["loss.average=pixels"]).loss, None)
