"""Does data loading keep up with training?

    python scripts/bench_data.py dataset.root=../shared/data/camvid aug.crop_size=[360,480]

Takes train.py's overrides (default dataset: camvid). Times, at the configured crop and batch,
the training pipeline alone (read, augment, collate) with each of `bench.workers`, the
Trainer's step on a ready batch, and that step fed by the loader. Loading keeps up when the
fed step is within 10% of the ready one; on a CPU, workers and model share the cores, which
the "expected" column (times only, no core sharing) leaves out. Prints a table and writes
bench_data.json (bench.output). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import publish, run_dir, user_errors
from segdil.data.loader import build_train_loader
from segdil.engine.trainer import Trainer

Batch = tuple[torch.Tensor, torch.Tensor]
KEEPS_UP = 0.9  # loading keeps up if the step fed by the loader reaches 90% of the ready-batch rate


def images_per_s(batches: Iterator[Batch], work: Callable[[Batch], object], count: int) -> float:
    """One untimed warm-up batch (worker start-up, lazy initialisation), then `count` timed
    ones; the median batch time resists the spikes of a machine shared with other jobs."""
    work(next(batches))
    times, sizes = [], []
    for _ in range(count):
        start = time.perf_counter()
        batch = next(batches)
        work(batch)
        times.append(time.perf_counter() - start)
        sizes.append(batch[0].shape[0])
    return statistics.median(sizes) / statistics.median(times)


def expected_fed(workers: int, load: float, step: float) -> float:
    """The fed step rate if loading and stepping only shared time, not cores: in the main
    process (0 workers) their times add up; in workers they overlap and the slower one sets
    the pace. Where the measured rate falls short of it, workers and model share cores."""
    return 1 / (1 / load + 1 / step) if workers == 0 else min(load, step)


def bench(cfg: DictConfig, out_dir: Path) -> dict:
    """Measure; return the JSON-ready result."""
    load_before = os.getloadavg()[0]
    trainer = Trainer(cfg, out_dir)
    dataset, count = trainer.train_loader.dataset, cfg.bench.batches

    def batches(workers: int) -> Iterator[Batch]:
        return iter(build_train_loader(dataset, cfg.data.batch_size, workers, cfg.seed, trainer.device, endless=True))

    def train_step(batch: Batch) -> float:
        return trainer._train_step(iter([batch])).loss  # the trainer's own step, whatever it grows into

    ready = next(batches(0))
    for _ in range(cfg.bench.warmup_steps):  # the first steps create kernels and buffers
        train_step(ready)
    step = images_per_s(repeat(ready), train_step, count)
    rows = []
    for workers in cfg.bench.workers:
        load = images_per_s(batches(workers), lambda batch: None, count)
        fed = images_per_s(batches(workers), train_step, count)
        rows.append(
            {
                "workers": workers,
                "load_images_per_s": load,
                "expected_fed_images_per_s": expected_fed(workers, load, step),
                "measured_fed_images_per_s": fed,
                "keeps_up": fed >= KEEPS_UP * step,
            }
        )
    keeping = [str(row["workers"]) for row in rows if row["keeps_up"]]
    best = max(row["measured_fed_images_per_s"] for row in rows) / step
    busy = load_before >= (os.cpu_count() or 1)  # other jobs already fill the cores
    return {
        "dataset": f"{cfg.dataset._target_.rsplit('.', 1)[-1]} {dataset.split}",
        "crop": list(ready[0].shape[-2:]),
        "batch_size": cfg.data.batch_size,
        "model": cfg.model.get("name", "?"),
        "device": str(trainer.device),
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "load_average_before": load_before,  # other jobs on the machine skew every number
        "step_images_per_s": step,
        "rows": rows,
        "verdict": (
            f"loading keeps up with {', '.join(keeping)} worker(s): the fed step reaches {KEEPS_UP:.0%} or more "
            "of the step on a ready batch"
            if keeping
            else f"loading is the bottleneck: the fed step reaches at best {best:.0%} of the step on a ready batch"
        )
        + (" (busy machine: timings unreliable)" if busy else ""),
    }


def table(result: dict) -> str:
    """The result as printed: a header, one row per worker count, the verdict."""
    step = result["step_images_per_s"]
    rows = [
        f"{r['workers']:>7} | {r['load_images_per_s']:>13.1f} | {r['expected_fed_images_per_s']:>14.1f} | "
        f"{r['measured_fed_images_per_s']:>14.1f} | {'yes' if r['keeps_up'] else 'no'}"
        for r in result["rows"]
    ]
    height, width = result["crop"]
    return "\n".join(
        [
            f"{result['dataset']}, crop {height}x{width}, batch {result['batch_size']}, model {result['model']}, "
            f"{result['device']}, {result['torch_threads']} torch threads, {result['cpu_cores']} cores "
            f"(load average {result['load_average_before']:.1f} before the run)",
            f"train step on a ready batch: {step:.1f} images/s",
            "workers | loading alone | fed, expected | fed, measured | keeps up   (images/s)",
            *rows,
            f"verdict: {result['verdict']}",
        ]
    )


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/bench_data")
def main(cfg: DictConfig) -> None:
    with user_errors():
        result = bench(cfg, run_dir())
        publish(table(result), result, cfg.bench.output)


if __name__ == "__main__":
    main()
