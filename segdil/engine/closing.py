"""The closing lines of a training run: where the best weights are, the command that evaluates
them, the command that compares runs in TensorBoard, and, when the model predicts a single class,
why that is expected of a short run."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from segdil.metrics import SegmentationMetrics

# The eval.py overrides a run's own command line carries over: the dataset and its val pipeline.
CARRIED_OVER = ("dataset", "aug")


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it lies below it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def dataset_overrides() -> list[str]:
    """This run's dataset choice and command-line dataset / aug overrides, as eval.py needs them
    (empty outside a Hydra app; the synthetic default needs no choice)."""
    if not HydraConfig.initialized():
        return []
    hydra = HydraConfig.get()
    dataset = hydra.runtime.choices.get("dataset")
    chosen = [f"dataset={dataset}"] if dataset and dataset != "synthetic" else []
    typed = [o for o in hydra.overrides.task if o.split("=")[0].split(".")[0].lstrip("+~") in CARRIED_OVER]
    return chosen + [o for o in typed if not o.startswith("dataset=")]


def eval_command(checkpoint: Path) -> str:
    arguments = [f"checkpoint={shown_path(checkpoint)}", *dataset_overrides()]
    return "python eval.py " + " ".join(shlex.quote(argument) for argument in arguments)


def single_class_note(metrics: SegmentationMetrics, class_names: Sequence[str]) -> str | None:
    """A line explaining a model that gets one class right and no other, or None."""
    right = [name for name, iou in zip(class_names, metrics.iou.tolist()) if iou > 0]
    if len(right) != 1:
        return None
    return (
        f"only '{right[0]}' is predicted right ({metrics.pixel_acc:.0%} of the val pixels, mIoU {metrics.miou:.3f}): "
        "a short run learns the most frequent class first; train longer for the others (trainer.max_iters)"
    )


def closing_lines(run_dir: Path, history: Sequence[dict]) -> list[str]:
    """Best checkpoint (the first validation with the highest mIoU, as best.pt keeps it), the
    eval command, and the TensorBoard command over the run's parent directory."""
    lines = []
    if history:
        best = max(history, key=lambda entry: entry["mIoU"])
        checkpoint = run_dir / "checkpoints" / "best.pt"
        lines.append(f"best val mIoU {best['mIoU']:.4f} (iteration {best['iteration']}): {shown_path(checkpoint)}")
        lines.append(f"evaluate it:  {eval_command(checkpoint)}")
    run = run_dir.resolve().name
    lines.append(f"compare runs: tensorboard --logdir {shown_path(run_dir.parent)}  (this run: {run}; Custom Scalars tab first)")
    return lines
