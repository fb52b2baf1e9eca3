"""One paper recipe end to end (see configs/scripts/reproduce.yaml and docs/recipes.md):

    python scripts/reproduce.py experiment=voc/dilation8_context dataset.root=data/voc

The recipe's `paper` node names its number (metric, split, value, source), the experiments
trained in turn (`stages`) and the evaluation settings of the score (`eval`). The command line's
other overrides apply to every stage.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import check_group_choices, publish, run_dir, user_errors
from segdil.data.loader import build_dataset
from segdil.engine.distributed import slurm_environment
from segdil.engine.evaluator import evaluate_checkpoint
from segdil.engine.trainer import Trainer
from segdil.errors import ConfigError

log = logging.getLogger("segdil")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def stage_configs(cfg: DictConfig, overrides: list[str]) -> list[tuple[str, DictConfig]]:
    """Each stage's train.py config: its experiment, the command line's overrides, and resume=auto
    (a rerun in the same directory continues). model.init_from is set when the stage runs."""
    paper = cfg.get("paper")
    if paper is None:
        choice = HydraConfig.get().runtime.choices.get("experiment")
        raise ConfigError(
            f"experiment={choice}: expected a paper recipe, one with a `paper` node (voc/*, cityscapes/*; docs/recipes.md)"
        )
    shared = [o for o in overrides if not o.lstrip("+~").startswith(("experiment=", "reproduce."))]
    return [(stage, compose("train", [f"experiment={stage}", *shared, "trainer.resume=auto"])) for stage in paper.stages]


def check_data(stages: list[tuple[str, DictConfig]]) -> None:
    """Every split that a stage trains or validates on can be listed, before hours of training:
    a missing tree is one line naming the path and the layout expected there."""
    for _, stage in stages:
        for split in (stage.dataset.train_split, stage.dataset.val_split):
            build_dataset(stage.dataset, split, None)


def eval_config(stage: DictConfig, paper: DictConfig, checkpoint: Path, batch_size: int) -> DictConfig:
    """eval.py's config for `checkpoint` on the stage's validation split, with the paper's evaluation settings."""
    cfg = compose("eval", [f"checkpoint={checkpoint}"])
    with open_dict(cfg):
        cfg.dataset, cfg.aug = stage.dataset, stage.aug
        cfg.dataset.split = stage.dataset.val_split
        cfg.eval = OmegaConf.merge(cfg.eval, paper.get("eval") or {})
        cfg.device, cfg.batch_size, cfg.num_workers = stage.trainer.device, batch_size, stage.data.num_workers
    return cfg


def reproduce(cfg: DictConfig, overrides: list[str], out_dir: Path) -> dict:
    """Train the stages, each from the previous one's last.pt; score each stage's last.pt."""
    if int(os.environ.get("WORLD_SIZE") or slurm_environment(os.environ).get("WORLD_SIZE", 1)) > 1:
        raise ConfigError(
            "reproduce.py runs in one process (each stage is read back and scored as soon as rank 0 wrote it); "
            "for several GPUs run the stages with torchrun train.py (docs/recipes.md)"
        )
    stages = stage_configs(cfg, overrides)
    paper = cfg.paper
    check_data(stages)
    rows, previous = [], None
    for name, stage in stages:
        stage_dir = out_dir / name.replace("/", "_")
        if previous is not None:
            stage.model.init_from = str(previous)
        log.info("stage %s in %s%s", name, stage_dir, f", from {previous}" if previous else "")
        Trainer(stage, stage_dir).fit()
        previous = stage_dir / "checkpoints" / "last.pt"
        (stage_dir / "eval").mkdir(exist_ok=True)
        scored = evaluate_checkpoint(eval_config(stage, paper, previous, cfg.reproduce.eval_batch_size), stage_dir / "eval")
        rows.append({"stage": name, "run_dir": str(stage_dir), "split": scored["split"], "mIoU": scored["mIoU"]})
    here = 100 * rows[-1]["mIoU"]
    return {
        "paper": OmegaConf.to_container(paper, resolve=True),
        "stages": rows,
        "here": here,
        "difference": here - paper.value,
    }


def table(result: dict) -> str:
    """One line per stage, then paper / here / difference."""
    paper, last = result["paper"], result["stages"][-1]
    lines = [f"stage {row['stage']}: {row['split']} mIoU {100 * row['mIoU']:.2f} ({row['run_dir']})" for row in result["stages"]]
    note = "" if paper["split"] == last["split"] else f"; the paper's is on {paper['split']}, this on {last['split']}: not the same images"
    lines.append(
        f"paper {paper['value']:.2f} / here {result['here']:.2f} / difference {result['difference']:+.2f} "
        f"({paper['metric']} in %{note}; paper: {paper['source']})"
    )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/reproduce")
def main(cfg: DictConfig) -> None:
    with user_errors():
        result = reproduce(cfg, list(HydraConfig.get().overrides.task), run_dir())
        publish(table(result), result, cfg.reproduce.output)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], CONFIGS)
    main()
