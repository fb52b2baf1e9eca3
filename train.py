"""Train a segmentation model: `python train.py [Hydra overrides]` (see README.md)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import check_group_choices, run_dir, user_errors
from segdil.engine.distributed import launch_rank, process_group_closed_at_exit
from segdil.engine.run_lock import run_lock
from segdil.engine.trainer import Trainer


CONFIGS = Path(__file__).parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    with user_errors(), run_lock(run_dir(), enabled=launch_rank() == 0), process_group_closed_at_exit():
        summary = Trainer(cfg, run_dir()).fit()
    return summary["best_mIoU"]


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONFIGS)
    main()
