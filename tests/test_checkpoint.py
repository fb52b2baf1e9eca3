"""Checkpoints: atomic writes, weights_only loading, clear errors for foreign files."""

import pytest
import torch

from segdil.engine.checkpoint import load_checkpoint, save_checkpoint
from segdil.errors import CheckpointError


def test_round_trip_with_weights_only(tmp_path) -> None:
    model = torch.nn.Conv2d(3, 4, 3)
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "iteration": 7, "config": "a: 1\n"})
    state = load_checkpoint(path)
    assert state["iteration"] == 7 and state["config"] == "a: 1\n"
    assert torch.equal(state["model"]["weight"], model.weight)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left


def test_overwrite_keeps_a_complete_file(tmp_path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"iteration": 1})
    save_checkpoint(path, {"iteration": 2})
    assert load_checkpoint(path)["iteration"] == 2


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_foreign_files_are_rejected(tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.txt"):
        load_checkpoint(text)
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a segdil checkpoint"):
        load_checkpoint(plain)
