"""How fast does segdil evaluate with each inference strategy, and what do the metrics cost?

    python scripts/bench_eval.py dataset.root=../shared/data/camvid

Takes train.py's overrides (default: experiment=camvid/fast) plus `bench.*`. For each
strategy in `bench.strategies` (overrides of the `eval` node: whole, slide, multi-scale + flip,
precision) it runs eval.py's loop (segdil.engine.evaluator.evaluate) over the first
`bench.images` val images and reports images/s, peak RSS and the share of the time spent in
ConfusionMatrix.update, timed inside that loop. Prints a table, writes bench_eval.json.
"""

from __future__ import annotations

import os
import time
from unittest import mock

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Subset

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import publish, user_errors
from segdil.data.loader import build_dataset, build_eval_loader
from segdil.engine.builders import build_model, build_transforms, resolve_device, restore_model
from segdil.engine.evaluator import build_predictor, evaluate
from segdil.metrics import ConfusionMatrix
from segdil.profiling import peak_rss_mib, reset_peak_rss, synchronize

METRIC_TARGET = 0.02  # metric accumulation may take at most 2% of evaluation time


class TimedUpdates:
    """Replaces ConfusionMatrix.update (patched in by the caller) with a version that adds up
    the seconds it takes, inside the real evaluation loop."""

    def __init__(self, device: torch.device) -> None:
        self.seconds = 0.0
        original = ConfusionMatrix.update

        def update(matrix: ConfusionMatrix, prediction: torch.Tensor, target: torch.Tensor) -> None:
            synchronize(device)  # the prediction's own queued work is not the metric's
            start = time.perf_counter()
            original(matrix, prediction, target)
            synchronize(device)
            self.seconds += time.perf_counter() - start

        self.update = update


def bench(cfg: DictConfig) -> dict:
    """Measure each strategy; return the JSON-ready result."""
    load_before = os.getloadavg()[0]
    device = resolve_device(cfg.trainer.device)
    _, val_transform = build_transforms(cfg.aug)
    dataset = build_dataset(cfg.dataset, cfg.dataset.val_split, val_transform)
    if cfg.bench.checkpoint:
        model = restore_model(cfg.bench.checkpoint, device)[0]
    else:
        model = build_model(cfg.model, dataset.num_classes).to(device)
    count = min(cfg.bench.images, len(dataset))
    loader = build_eval_loader(Subset(dataset, range(count)), cfg.data.val_batch_size, cfg.data.num_workers, device)
    warmup = build_eval_loader(Subset(dataset, range(1)), 1, 0, device)
    rows = []
    for item in cfg.bench.strategies:
        name, overrides = item.name, {key: value for key, value in item.items() if key != "name"}
        strategy = OmegaConf.merge(cfg.eval, overrides)
        predictor = build_predictor(strategy, model, dataset.num_classes, device)
        evaluate(predictor, warmup, dataset.num_classes, device, progress=False)
        timer = TimedUpdates(device)
        reset_peak_rss()
        with mock.patch.object(ConfusionMatrix, "update", timer.update):
            synchronize(device)
            start = time.perf_counter()
            evaluate(predictor, loader, dataset.num_classes, device, progress=False)
            synchronize(device)
            seconds = time.perf_counter() - start
        rows.append(
            {
                "strategy": name,
                "eval": OmegaConf.to_container(strategy),
                "images_per_s": count / seconds,
                "seconds": seconds,
                "metric_seconds": timer.seconds,
                "metric_fraction": timer.seconds / seconds,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    height, width = dataset[0][0].shape[-2:]
    return {
        "model": cfg.model.get("name", "?"),
        "checkpoint": cfg.bench.checkpoint,
        "images": count,
        "image_size": [height, width],
        "batch_size": cfg.data.val_batch_size,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "load_average_before": load_before,
        "rows": rows,
        "metric_target_met": all(r["metric_fraction"] <= METRIC_TARGET for r in rows),
    }


def table(result: dict) -> str:
    height, width = result["image_size"]
    lines = [
        (
            f"{result['model']}, {result['images']} val images at {height}x{width}, batch {result['batch_size']}, "
            f"{result['device']}, {result['torch_threads']} torch threads, {result['cpu_cores']} cores "
            f"(load average {result['load_average_before']:.1f} before the run)"
        ),
        f"{'strategy':<22} {'img/s':>7} {'seconds':>8} {'metrics':>8} {'RSS MiB':>8}",
    ]
    lines += [
        f"{r['strategy']:<22} {r['images_per_s']:>7.2f} {r['seconds']:>8.1f} {r['metric_fraction']:>8.2%} {r['peak_rss_mib']:>8.0f}"
        for r in result["rows"]
    ]
    verdict = "met" if result["metric_target_met"] else "MISSED"
    lines.append(f"metric accumulation <= {METRIC_TARGET:.0%} of evaluation time: {verdict}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/bench_eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        result = bench(cfg)
        publish(table(result), result, cfg.bench.output)


if __name__ == "__main__":
    main()
