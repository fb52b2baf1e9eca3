"""Leave-one-sequence-out cross-validation on CamVid (see configs/scripts/camvid_loso.yaml):

    python scripts/camvid_loso.py dataset.root=../shared/data/camvid [train.py overrides]

CamVid's train and val hold three street sequences; each fold trains on two of them and
validates on the third, so every score is on a street the model never saw. `loso.init_from=DIR`
starts each fold from the same fold of an earlier run (DIR/<sequence>/checkpoints/last.pt): stage 2
of a staged schedule, e.g. the context module on frozen front ends (docs/camvid/notebook.md).
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

import hydra
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import publish, run_dir, user_errors
from segdil.engine.trainer import Trainer

log = logging.getLogger("segdil")


def leave_one_sequence_out(cfg: DictConfig, out_dir: Path) -> dict:
    """Train one fold per sequence of `cfg.loso.sequences` in `out_dir/<sequence>`."""
    folds = []
    for sequence in cfg.loso.sequences:
        fold = cfg.copy()
        fold.dataset.holdout = sequence
        if cfg.loso.init_from:  # a later stage of a staged schedule, on the earlier stage's fold
            fold.model.init_from = str(Path(cfg.loso.init_from) / sequence / "checkpoints" / "last.pt")
        log.info("fold %s: training on the other sequences", sequence)
        trainer = Trainer(fold, out_dir / sequence)
        train_frames, val_frames = len(trainer.train_set), len(trainer.val_set)
        summary = trainer.fit()
        folds.append(
            {
                "holdout": sequence,
                "train_frames": train_frames,
                "val_frames": val_frames,
                "final_mIoU": summary["final"]["mIoU"],
                "best_mIoU": summary["best_mIoU"],
                "minutes": summary["train_minutes"],
                "run_dir": summary["run_dir"],
            }
        )
    finals = [fold["final_mIoU"] for fold in folds]
    return {
        "folds": folds,
        "mean_final_mIoU": statistics.fmean(finals),
        "stdev_final_mIoU": statistics.stdev(finals) if len(finals) > 1 else 0.0,
    }


def table(result: dict) -> str:
    lines = ["held out  train  val   final mIoU  best mIoU  minutes"]
    for fold in result["folds"]:
        lines.append(
            f"{fold['holdout']:<8}  {fold['train_frames']:>5}  {fold['val_frames']:>4}  "
            f"{fold['final_mIoU']:>10.4f}  {fold['best_mIoU']:>9.4f}  {fold['minutes']:>7.1f}"
        )
    lines.append(f"mean final mIoU {result['mean_final_mIoU']:.4f} (stdev {result['stdev_final_mIoU']:.4f} over folds)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/camvid_loso")
def main(cfg: DictConfig) -> None:
    with user_errors():
        result = leave_one_sequence_out(cfg, run_dir())
        publish(table(result), result, cfg.loso.output)


if __name__ == "__main__":
    main()
