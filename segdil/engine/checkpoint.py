"""Checkpoints: plain dicts of tensors and Python values, written atomically, loaded safely."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segdil.errors import CheckpointError
from segdil.loading import read_weights_file

FORMAT = "segdil-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` so that `path` always holds either the old or the new file, never a torn one;
    a failed write (disk full, quota, I/O error) is one CheckpointError and the old file stays."""
    path = Path(path)
    try:
        _write_atomically(path, state)
    except Exception as error:
        cause = os_error(error)
        if cause is None:
            raise
        previous = "the previous one is intact" if path.is_file() else "there was no previous one"
        raise CheckpointError(f"cannot write checkpoint {path}: {cause.strerror or cause}; {previous}") from error


def os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind `error`, if any: torch.save turns a failed write of its zip archive
    into a RuntimeError raised while handling the OSError, which stays as its context."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
    """Temp file in the same folder, flush, fsync, os.replace, then fsync the folder so the rename
    itself survives a power cut; the temp file is removed if anything fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def is_checkpoint(state: Any) -> bool:
    """Whether a loaded file is a segdil checkpoint (as save_checkpoint writes them)."""
    return isinstance(state, dict) and state.get("format") == FORMAT


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a segdil checkpoint with `weights_only=True`; anything else is a CheckpointError."""
    state = read_weights_file(path, "checkpoint", "expected a segdil checkpoint, a .pt file written by train.py")
    if not is_checkpoint(state):
        raise CheckpointError(
            f"checkpoint={path}: not a segdil checkpoint (expected a dict with format={FORMAT!r}, "
            "as written by train.py)"
        )
    return state


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load a state dict strictly; on any mismatch raise one CheckpointError listing the keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise CheckpointError(f"{source}: weights do not fit this model; " + "; ".join(parts))
    model.load_state_dict(state)


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step can draw from, in weights_only-loadable types."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": torch.from_numpy(numpy_state["state"]["key"])}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].numpy()}})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prune_checkpoints(directory: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` iteration checkpoints (iter_*.pt); 0 keeps them all."""
    if keep_last <= 0:
        return
    for stale in sorted(directory.glob("iter_*.pt"))[:-keep_last]:
        stale.unlink(missing_ok=True)
