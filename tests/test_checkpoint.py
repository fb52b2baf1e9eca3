"""Checkpoints: atomic writes, weights_only loading, clear errors for foreign files and full disks."""

import errno
import os
import shutil
import subprocess

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


# --- a full disk: the previous checkpoint stays, the error is one line ------------------------

def no_space(*args, **kwargs) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def torch_zip_failure(state, handle) -> None:
    """What torch.save does on a full disk: the OSError of a write, then a RuntimeError from
    its zip writer raised while handling it."""
    handle.write(b"PK partial")
    try:
        no_space()
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 768 vs 662") from None


@pytest.mark.parametrize("failure", [no_space, torch_zip_failure])
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"iteration": 1})
    monkeypatch.setattr(torch, "save", failure)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"iteration": 2})
    assert str(info.value) == f"cannot write checkpoint {path}: No space left on device; the previous one is intact"
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temp file is gone
    monkeypatch.setattr(torch, "save", failure)
    with pytest.raises(CheckpointError, match=f"cannot write checkpoint {tmp_path}/best.pt: .*; there was no previous one"):
        save_checkpoint(tmp_path / "best.pt", {"iteration": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_other_failures_stay_tracebacks(tmp_path, monkeypatch) -> None:
    def bug(state, handle) -> None:
        raise RuntimeError("a bug, not the disk")

    monkeypatch.setattr(torch, "save", bug)
    with pytest.raises(RuntimeError, match="a bug, not the disk"):
        save_checkpoint(tmp_path / "last.pt", {"iteration": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount; skipped where either is missing)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_real_full_disk_keeps_the_previous_checkpoint(small_disk) -> None:
    path = small_disk / "last.pt"
    save_checkpoint(path, {"iteration": 1, "weights": torch.zeros(1000)})
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"iteration": 2, "weights": torch.zeros(1_000_000)})  # 4 MB
    assert str(info.value) == f"cannot write checkpoint {path}: No space left on device; the previous one is intact"
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in small_disk.iterdir()] == ["last.pt"]
