"""segdil's per-class IoU against the official Cityscapes evaluation (cityscapesscripts), on
label files written in the official format by segdil's own prediction writer."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdil.data.datasets import Cityscapes
from segdil.engine.prediction_files import PredictionWriter
from segdil.metrics import ConfusionMatrix

official = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")


def official_class_iou(predictions: list[Path], ground_truths: list[Path]) -> dict[str, float]:
    args = official.args
    args.evalInstLevelScore, args.JSONOutput, args.quiet, args.evalPixelAccuracy = False, False, True, False
    result = official.evaluateImgLists([str(p) for p in predictions], [str(g) for g in ground_truths], args)
    return result["classScores"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_iou_matches_cityscapesscripts(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = np.asarray(Cityscapes.table, dtype=np.uint8)
    writer = PredictionWriter(tmp_path, Cityscapes.palette, Cityscapes.train_id_to_id)
    confusion = ConfusionMatrix(len(Cityscapes.class_names))
    ground_truths, predictions = [], []
    for index in range(3):
        # Label ids 0..33: 15 of them are not evaluated (train id 255), e.g. 0 unlabeled, 4 static.
        label_ids = rng.integers(0, 34, size=(40, 60), dtype=np.uint8)
        train_ids = rng.integers(0, 19, size=(40, 60))
        train_ids[train_ids == 5] = 6  # "pole" (train id 5, label id 17) is never predicted ...
        label_ids[label_ids == 17] = 7  # ... nor in the ground truth: its IoU is NaN for both
        ground_truth = tmp_path / f"city_{index:06d}_gtFine_labelIds.png"
        Image.fromarray(label_ids).save(ground_truth)
        writer.write(f"city_{index:06d}", train_ids)
        ground_truths.append(ground_truth)
        predictions.append(tmp_path / "cityscapes" / f"city_{index:06d}_labelIds.png")
        confusion.update(torch.from_numpy(train_ids), torch.from_numpy(table[label_ids].astype(np.int64)))
    ours = confusion.compute().iou
    theirs = official_class_iou(predictions, ground_truths)
    for name, value in zip(Cityscapes.class_names, ours.tolist()):
        if np.isnan(theirs[name]):
            assert np.isnan(value), name
        else:
            assert value == pytest.approx(theirs[name], abs=1e-6), name
    assert np.isnan(theirs["pole"]) and np.isnan(float(ours[5]))
