"""CamVid's sequence-aware protocol: a held-out street sequence, and training on a list of splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA, require_data
from test_datasets import load_script
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


def test_a_numeric_holdout_is_refused_with_a_hint(streets: Path) -> None:
    with pytest.raises(ConfigError, match="holdout=1600000.0: .*quote it"):
        CamVid(streets, "train", holdout=1600000.0)  # what unquoted 0016E5 becomes in a YAML list


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
    assert len(CamVid(root, ["train", "val"])) == 468  # the final form trains on all of them


# --- Scripts: leave-one-sequence-out, snapshots scored on another split ------------------------

TINY = [
    "model.backbone.width=8",
    "aug.crop_size=[16,16]",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.max_iters=2",
    "trainer.val_every=2",
    "trainer.val_panels=0",
    "trainer.progress=false",
]


@pytest.fixture
def three_streets(tmp_path: Path) -> Path:
    root = tmp_path / "camvid"
    train = ["A_0", "A_1", "A_2", "B_0", "B_1", "B_2", "C_0", "C_1"]
    make_camvid(root, "train", {name: camvid_mask(k) for k, name in enumerate(train)})
    make_camvid(root, "val", {name: camvid_mask(k) for k, name in enumerate(["C_2", "C_3"])})
    return root


def test_leave_one_sequence_out_trains_a_fold_per_sequence(compose, three_streets: Path, tmp_path: Path) -> None:
    loso = load_script("camvid_loso")
    overrides = [*TINY, f"dataset.root={three_streets}", "loso.sequences=[A,B,C]", f"loso.output={tmp_path}/loso.json"]
    result = loso.leave_one_sequence_out(compose("scripts/camvid_loso", overrides), tmp_path / "folds")
    folds = {fold["holdout"]: fold for fold in result["folds"]}
    assert {name: (fold["train_frames"], fold["val_frames"]) for name, fold in folds.items()} == {
        "A": (7, 3), "B": (7, 3), "C": (6, 4)
    }
    for name, fold in folds.items():
        assert (tmp_path / "folds" / name / "metrics.json").is_file() and 0.0 <= fold["final_mIoU"] <= 1.0
    assert result["mean_final_mIoU"] == pytest.approx(sum(f["final_mIoU"] for f in folds.values()) / 3)
    assert loso.table(result).splitlines()[-1].startswith("mean final mIoU")


def test_a_second_stage_starts_each_fold_from_the_first_stages_fold(compose, three_streets: Path, tmp_path: Path) -> None:
    from segdil.engine.checkpoint import load_checkpoint

    loso = load_script("camvid_loso")
    shared = [*TINY, f"dataset.root={three_streets}", "loso.sequences=[A,C]", f"loso.output={tmp_path}/loso.json"]
    loso.leave_one_sequence_out(compose("scripts/camvid_loso", [*shared, "model.context=null"]), tmp_path / "front")
    stage_two = [*shared, f"loso.init_from={tmp_path / 'front'}", "model.freeze=[backbone,head]", "trainer.frozen_cache=true"]
    loso.leave_one_sequence_out(compose("scripts/camvid_loso", stage_two), tmp_path / "module")
    for fold in ("A", "C"):
        front = load_checkpoint(tmp_path / "front" / fold / "checkpoints/last.pt")["model"]
        staged = load_checkpoint(tmp_path / "module" / fold / "checkpoints/last.pt")["model"]
        assert all(torch.equal(front[key], staged[key]) for key in front)
    other = load_checkpoint(tmp_path / "front/C/checkpoints/last.pt")["model"]
    staged_a = load_checkpoint(tmp_path / "module/A/checkpoints/last.pt")["model"]
    assert not all(torch.equal(other[key], staged_a[key]) for key in other)


def test_leave_one_sequence_out_holds_out_the_three_camvid_sequences_by_name(compose) -> None:
    assert list(compose("scripts/camvid_loso", []).loso.sequences) == ["0001TP", "0006R0", "0016E5"]


def test_snapshots_are_scored_on_another_split_with_their_minutes(compose, three_streets: Path, tmp_path: Path) -> None:
    from segdil.engine.trainer import Trainer

    train = compose("train", ["experiment=camvid/resnet18_context", *TINY, f"dataset.root={three_streets}", "dataset.holdout=B", "trainer.ckpt_every=1", "trainer.keep_last=5"])
    Trainer(train, tmp_path / "run").fit()
    snapshots = load_script("eval_snapshots")
    cfg = compose(
        "scripts/eval_snapshots",
        [f"run={tmp_path / 'run'}", "dataset=camvid", f"dataset.root={three_streets}", "dataset.holdout=B", "dataset.split=holdout",
         "aug.crop_size=[16,16]", "batch_size=2", f"output={tmp_path}/snapshots.json"],
    )
    result = snapshots.score_snapshots(cfg, tmp_path / "scores")
    assert result["split"] == "holdout" and [row["iteration"] for row in result["rows"]] == [1, 2]
    assert 0 < result["rows"][0]["minutes"] <= result["rows"][1]["minutes"]
    assert (tmp_path / "scores/iter_0000002/metrics.json").is_file()
    with pytest.raises(ConfigError, match="no checkpoints/iter_"):
        snapshots.score_snapshots(compose("scripts/eval_snapshots", [f"run={tmp_path}"]), tmp_path / "none")
