"""Evaluate a checkpoint: `python eval.py checkpoint=PATH [Hydra overrides]` (see README.md)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import check_group_choices, run_dir, user_errors
from segdil.engine.evaluator import evaluate_checkpoint

CONFIGS = Path(__file__).parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        evaluate_checkpoint(cfg, run_dir())


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONFIGS)
    main()
