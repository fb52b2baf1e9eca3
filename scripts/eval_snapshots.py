"""Score every iteration snapshot of a train.py run on one split (see configs/scripts/eval_snapshots.yaml):

    python scripts/eval_snapshots.py run=RUN_DIR dataset=camvid dataset.root=PATH dataset.holdout=0006R0 dataset.split=holdout

A run validates on one split while it trains; this gives the other protocol's number at each
point, with the training minutes of the snapshot, without adding its cost to the run's clock.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import publish, run_dir, user_errors
from segdil.engine.checkpoint import load_checkpoint
from segdil.engine.evaluator import evaluate_checkpoint
from segdil.errors import ConfigError

log = logging.getLogger("segdil")


def score_snapshots(cfg: DictConfig, out_dir: Path) -> dict:
    """Evaluate each `checkpoints/iter_*.pt` of `cfg.run` with eval.py's code; one row each."""
    snapshots = sorted((Path(cfg.run) / "checkpoints").glob("iter_*.pt"))
    if not snapshots:
        raise ConfigError(f"run={cfg.run}: no checkpoints/iter_*.pt (train with trainer.keep_last=N to keep snapshots)")
    rows = []
    for path in snapshots:
        state = load_checkpoint(path)
        cfg.checkpoint = str(path)
        (out_dir / path.stem).mkdir(parents=True, exist_ok=True)
        metrics = evaluate_checkpoint(cfg, out_dir / path.stem)
        seconds = state.get("train_seconds")
        rows.append(
            {
                "iteration": state["iteration"],
                "minutes": None if seconds is None else round(seconds / 60, 3),
                "mIoU": metrics["mIoU"],
                "pixel_acc": metrics["pixel_acc"],
            }
        )
    return {"run": str(Path(cfg.run).resolve()), "split": metrics["split"], "rows": rows}


def table(result: dict) -> str:
    lines = [f"{result['run']}: {result['split']} split", "iteration  minutes  mIoU    pixel acc"]
    for row in result["rows"]:
        minutes = "?" if row["minutes"] is None else f"{row['minutes']:.1f}"
        lines.append(f"{row['iteration']:>9}  {minutes:>7}  {row['mIoU']:.4f}  {row['pixel_acc']:.4f}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/eval_snapshots")
def main(cfg: DictConfig) -> None:
    with user_errors():
        result = score_snapshots(cfg, run_dir())
        publish(table(result), result, cfg.output)


if __name__ == "__main__":
    main()
