"""One loader for every weights file a user names (checkpoint, resume, init_from, backbone
weights, predict, export), so that a missing, foreign, truncated or pickled-code file gives the
same one-line error everywhere; `weights_only=True` means no pickled code ever runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segdil.errors import CheckpointError


def read_weights_file(path: str | Path, key: str, expected: str) -> Any:
    """`torch.load(weights_only=True)` of a file named by config key `key`; a missing or
    unreadable file is one CheckpointError naming the key, the path and `expected`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}={path}: no such file ({expected})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or corrupt files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{key}={path}: torch.load failed ({reason}); {expected}") from None
