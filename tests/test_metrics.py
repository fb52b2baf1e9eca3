"""Metrics against torchmetrics and against hand-computed cases."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from segdil.metrics import ConfusionMatrix, format_table


def test_hand_computed_case_with_ignore_and_absent_class() -> None:
    # Classes 0..3; class 3 appears in neither prediction nor label; one ignored pixel.
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 0]])
    cm = ConfusionMatrix(num_classes=4)
    cm.update(prediction, target)
    m = cm.compute()
    # class 0: tp 2 (0,0),(1,3); fp 1 (1,1 predicted 0); fn 1 ((0,1) predicted 1) -> 2/4
    # class 1: tp 2; fp 1 ((0,1)); fn 0 -> 2/3
    # class 2: tp 1; fp 0; fn 1 -> 1/2
    # class 3: only predicted on the ignored pixel, which does not count -> NaN
    assert m.iou[:3].tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 2])
    assert math.isnan(m.iou[3])
    assert m.miou == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert m.pixel_acc == pytest.approx(5 / 7)
    assert m.mean_acc == pytest.approx((2 / 3 + 2 / 2 + 1 / 2) / 3)
    assert m.fw_iou == pytest.approx(3 / 7 * 2 / 4 + 2 / 7 * 2 / 3 + 2 / 7 * 1 / 2)
    assert m.as_dict(["a", "b", "c", "d"])["per_class_iou"]["d"] is None


def test_class_never_predicted_has_zero_iou() -> None:
    cm = ConfusionMatrix(num_classes=3)
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1]))
    assert cm.compute().iou.tolist() == pytest.approx([0.5, 1.0, 0.0])


@pytest.mark.parametrize("seed", range(4))
def test_matches_torchmetrics_streaming(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    num_classes = 6
    cm = ConfusionMatrix(num_classes=num_classes)
    jaccard = MulticlassJaccardIndex(num_classes, average=None, ignore_index=255)
    accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=255)
    for _ in range(3):  # several batches: the matrix must accumulate
        target = torch.randint(0, num_classes - 1, (2, 16, 16), generator=generator)  # class 5 never in labels
        target[torch.rand(target.shape, generator=generator) < 0.1] = 255
        prediction = torch.randint(0, num_classes, (2, 16, 16), generator=generator)
        prediction[prediction == 4] = 0  # class 4 never predicted
        cm.update(prediction, target)
        jaccard.update(prediction, target)
        accuracy.update(prediction, target)
    ours = cm.compute()
    reference = jaccard.compute().double()
    assert torch.allclose(ours.iou, reference, atol=1e-12)
    assert ours.miou == pytest.approx(float(reference.mean()))
    assert ours.pixel_acc == pytest.approx(float(accuracy.compute()))


def test_labels_out_of_range_are_rejected() -> None:
    cm = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"\[7\]"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))


def test_table_names_every_class() -> None:
    cm = ConfusionMatrix(num_classes=2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    table = format_table(cm.compute(), ["road", "sky"])
    assert "road" in table and "sky" in table and "100.00" in table


def test_labels_outside_the_classes_are_refused_and_ignore_is_not_counted() -> None:
    confusion = ConfusionMatrix(3, ignore_index=255)
    prediction = torch.tensor([[0, 1, 2, 2]])
    confusion.update(prediction, torch.tensor([[0, 255, 2, 1]]))
    assert confusion.matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]  # the 255 pixel is nowhere
    with pytest.raises(ValueError, match=r"outside \[0, 3\) and not 255: \[3, 7\]"):
        confusion.update(prediction, torch.tensor([[3, 7, 255, 0]]))
