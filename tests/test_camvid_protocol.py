"""CamVid's sequence-aware protocol: a held-out street sequence, and training on a list of splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SHARED_DATA, require_data
from segdil.data.datasets import CamVid, camvid_sequence
from segdil.data.loader import build_dataset
from segdil.errors import ConfigError
from trees import camvid_mask, make_camvid


@pytest.fixture
def streets(tmp_path: Path) -> Path:
    """Three sequences spread over train and val as in SegNet's split: C is in both."""
    make_camvid(tmp_path, "train", {name: camvid_mask(k) for k, name in enumerate(["A_0", "A_1", "B_0", "C_0"])})
    make_camvid(tmp_path, "val", {name: camvid_mask(k) for k, name in enumerate(["C_1", "C_2"])})
    return tmp_path


def stems(dataset: CamVid) -> list[str]:
    return [dataset.stem(index) for index in range(len(dataset))]


def test_a_held_out_sequence_leaves_every_split_and_is_gathered_from_all(streets: Path) -> None:
    assert stems(CamVid(streets, "train", holdout="B")) == ["A_0", "A_1", "C_0"]
    assert stems(CamVid(streets, "holdout", holdout="B")) == ["B_0"]
    assert stems(CamVid(streets, "holdout", holdout="C")) == ["C_0", "C_1", "C_2"]
    assert stems(CamVid(streets, ["train", "val"], holdout="C")) == ["A_0", "A_1", "B_0"]


def test_a_list_of_splits_is_their_union_and_must_not_overlap(streets: Path) -> None:
    both = CamVid(streets, ["train", "val"])
    assert stems(both) == ["A_0", "A_1", "B_0", "C_0", "C_1", "C_2"] and both.split == "train+val"
    with pytest.raises(ConfigError, match="train\\+train: the splits overlap"):
        CamVid(streets, ["train", "train"])


def test_bad_holdout_settings_are_one_line_errors(streets: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset.holdout=Z: no frame of that sequence .* found \['A', 'B', 'C'\]"):
        CamVid(streets, "holdout", holdout="Z")
    with pytest.raises(ConfigError, match="dataset.split=holdout needs dataset.holdout"):
        CamVid(streets, "holdout")


def test_the_protocol_is_spelled_in_the_config(compose, streets: Path) -> None:
    cfg = compose(
        "train",
        ["dataset=camvid", f"dataset.root={streets}", "dataset.holdout=C", "dataset.train_split=[train,val]", "dataset.val_split=holdout"],
    )
    train = build_dataset(cfg.dataset, cfg.dataset.train_split, None)
    held = build_dataset(cfg.dataset, cfg.dataset.val_split, None)
    assert stems(train) == ["A_0", "A_1", "B_0"] and stems(held) == ["C_0", "C_1", "C_2"]


def test_real_camvid_sequences_split_as_documented() -> None:
    root = require_data(SHARED_DATA / "camvid")
    held = CamVid(root, "holdout", holdout="0006R0")
    train = CamVid(root, ["train", "val"], holdout="0006R0")
    assert len(held) == 101 and len(train) == 367  # 0001TP 62 + 0016E5 204 + val 101
    assert {camvid_sequence(path) for path in held.images} == {"0006R0"}
    assert {camvid_sequence(path) for path in train.images} == {"0001TP", "0016E5"}
    assert len(CamVid(root, "train", holdout="0006R0")) == 266 and len(CamVid(root, "val", holdout="0006R0")) == 101
