"""Shared test helpers: the repository root, config composition and tiny overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import segdil  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# Real data shared beside the repository (../shared/data), or where SEGDIL_SHARED_DATA points.
SHARED_DATA = Path(os.environ.get("SEGDIL_SHARED_DATA", REPO.parent / "shared" / "data"))

# Small enough for a 2-core CPU: a width-8 backbone on 64x64 images, a handful of iterations.
TINY_TRAIN_OVERRIDES = [
    "model.backbone.width=8",
    "dataset.size=64",
    "dataset.lengths={train: 16, val: 8, test: 8}",
    "data.batch_size=4",
    "data.val_batch_size=4",
    "trainer.max_iters=4",
    "trainer.val_every=2",
    "trainer.val_panels=2",
    "trainer.ckpt_every=2",
    "trainer.log_every=1",
    "trainer.progress=false",
]

torch.set_num_threads(min(2, os.cpu_count() or 1))


def require_data(path: Path) -> Path:
    """`path` if it exists. Otherwise the test is skipped on a developer machine, but fails
    under CI=true: CI must never pass by silently skipping the real-data tests."""
    if not path.exists():
        message = f"real data not found: {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: real-data tests must run)")
        pytest.skip(message)
    return path


@pytest.fixture
def compose():
    """compose(config_name, overrides) -> DictConfig, with Hydra's global state cleaned after."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(config_name: str, overrides: list[str] | None = None):
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides or [])

    return _compose
