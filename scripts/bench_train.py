"""How fast does segdil train, and how much of it is the framework?

    python scripts/bench_train.py dataset.root=../shared/data/camvid
    python scripts/bench_train.py dataset.root=../shared/data/camvid model=deeplabv3_resnet50 data.batch_size=4

Takes train.py's overrides (default: the fast CamVid recipe). In one process, for each
precision setting in `bench.settings` (auto: fp32, and with channels_last what precision=auto
picks on this CPU), times on the configured model, crop and batch:
  (a) the bare step: forward, loss, backward, optimizer step on one fixed batch;
  (b) train.py's loop (Trainer.fit: data loading, logging, schedule; its checkpoint save is
      timed and counted once per trainer.ckpt_every iterations, as in a real run);
  (c) torchvision's model of the same family (weights=None) trained by a plain loop.
Achieved GFLOP/s come from torch.utils.flop_counter (forward + backward) and are set against
convolution and matmul ceilings timed in the same run. Prints a table, the targets of
docs/performance.md, and writes bench_train.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
import torchvision
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import publish, run_dir, user_errors
from segdil.data.base import IGNORE_INDEX
from segdil.engine.builders import resolve_device
from segdil.engine.precision import DTYPES, autocast_factory, choose_precision
from segdil.engine.trainer import Trainer
from segdil.errors import ConfigError
from segdil.machine import cpu_class
from segdil.profiling import ceilings, count_flops, peak_rss_mib, reset_peak_rss, timed

Step = Callable[[], object]
LossFn = Callable[[object, torch.Tensor], torch.Tensor]
NEVER = 10**9  # an interval no benchmark reaches: validation is bench_eval.py's business


def resolve_settings(settings: str | list, device: torch.device) -> list[DictConfig]:
    """`bench.settings`: a list of {precision, channels_last}, or `auto`: fp32, then what train.py's
    precision=auto runs on `device`, with channels_last (so that no row pays for emulated bf16)."""
    if settings != "auto":
        return list(settings)
    fastest = choose_precision("auto", device).name
    return [OmegaConf.create({"precision": "32", "channels_last": False}), OmegaConf.create({"precision": fastest, "channels_last": True})]


def setting_name(setting: DictConfig) -> str:
    precision = "fp32" if str(setting.precision) == "32" else str(setting.precision)
    return precision + (" channels_last" if setting.channels_last else "")


def step_fn(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer, autocast, batch) -> Step:
    """A plain training step on a fixed batch: what any training loop must at least do."""
    images, masks = batch

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(images), masks)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step: Step, warmup: int, steps: int, device: torch.device) -> float:
    """Mean seconds per step over `steps` calls after `warmup` untimed ones (kernel selection,
    buffer allocation)."""
    for _ in range(warmup):
        step()
    return sum(timed(step, device) for _ in range(steps)) / steps


def torchvision_builder(name: str, model_cfg: DictConfig) -> str:
    """The torchvision builder (c) is measured with: `auto` follows the segdil head's family."""
    if name != "auto":
        return name
    return "deeplabv3_resnet50" if "deeplab" in str(model_cfg.head._target_) else "fcn_resnet50"


def torchvision_model(name: str, num_classes: int) -> nn.Module:
    builder = getattr(torchvision.models.segmentation, name, None)
    if builder is None:
        raise ConfigError(f"bench.torchvision={name}: not a torchvision.models.segmentation builder")
    return builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)


def row(name: str, setting: str, seconds: float, batch: int, flops: int, ceiling: dict[str, float], **extra) -> dict:
    rate = flops / seconds / 1e9
    return {
        "name": name,
        "setting": setting,
        "images_per_s": batch / seconds,
        "s_per_iter": seconds,
        "gflop_per_step": flops / 1e9,
        "gflops_per_s": rate,
        "conv_ceiling_fraction": rate / ceiling["conv"],
        "matmul_ceiling_fraction": rate / ceiling["matmul"],
        "peak_rss_mib": peak_rss_mib(),
        **extra,
    }


def bench_setting(cfg: DictConfig, setting: DictConfig, out_dir: Path, ceiling: dict[str, float]) -> list[dict]:
    """(a), (b), (c) and optionally (a) compiled, for one precision setting."""
    run_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "bench"])  # train.py's config
    OmegaConf.update(run_cfg, "trainer.precision", setting.precision)
    OmegaConf.update(run_cfg, "trainer.channels_last", setting.channels_last)
    OmegaConf.update(run_cfg, "trainer.val_every", NEVER)
    OmegaConf.update(run_cfg, "trainer.ckpt_every", NEVER)
    name, bench = setting_name(setting), cfg.bench
    trainer = Trainer(run_cfg, out_dir / name.replace(" ", "_"))
    device, memory_format = trainer.device, trainer.memory_format
    images, masks = next(iter(trainer.train_loader))
    batch = images.to(device, memory_format=memory_format), masks.to(device)
    size, num_classes = images.shape[0], len(trainer.class_names)
    rows = []

    bare = step_fn(trainer.model, trainer.criterion, trainer.optimizer, trainer.autocast, batch)
    flops = count_flops(bare)
    reset_peak_rss()
    bare_seconds = time_steps(bare, bench.warmup, bench.steps, device)
    rows.append(row("(a) bare step", name, bare_seconds, size, flops, ceiling))

    trainer.fit(until=trainer.iteration + bench.warmup)
    reset_peak_rss()
    summary = trainer.fit(until=trainer.iteration + bench.steps)
    # fit() saves last.pt when it stops; a real run saves every trainer.ckpt_every iterations,
    # so that save is timed again and counted at the recipe's interval instead.
    save_seconds = timed(trainer._save_last, device)
    per_save = save_seconds / cfg.trainer.ckpt_every
    loop_seconds = (summary["seconds"] - save_seconds) / bench.steps + per_save
    waited = summary["data_wait_fraction"]
    rows.append(
        row("(b) train.py loop", name, loop_seconds, size, flops, ceiling, data_wait_fraction=waited, checkpoint_seconds=save_seconds)
    )

    if bench.compile:
        compiled = torch.compile(trainer.model)
        step = step_fn(compiled, trainer.criterion, trainer.optimizer, trainer.autocast, batch)
        compile_seconds = timed(step, device)
        reset_peak_rss()
        seconds = time_steps(step, bench.warmup, bench.steps, device)
        rows.append(row("(a) bare step, torch.compile", name, seconds, size, flops, ceiling, compile_seconds=compile_seconds))
    del trainer, bare

    if bench.torchvision:
        builder = torchvision_builder(bench.torchvision, cfg.model)
        model = torchvision_model(builder, num_classes).to(device, memory_format=memory_format)
        optimizer = instantiate(cfg.optim, params=model.parameters())

        def loss_fn(output: dict, target: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(output["out"], target, ignore_index=IGNORE_INDEX)

        step = step_fn(model, loss_fn, optimizer, autocast_factory(setting.precision, device), batch)
        tv_flops = count_flops(step)
        reset_peak_rss()
        seconds = time_steps(step, 1, bench.torchvision_steps, device)
        rows.append(row(f"(c) torchvision {builder}", name, seconds, size, tv_flops, ceiling))
    for item in rows:
        item["vs_bare"] = item["images_per_s"] / rows[0]["images_per_s"]
        item["input"] = list(images.shape[-2:])
    return rows


def targets(rows: list[dict], model_name: str, tv_name: str | None) -> list[dict]:
    """The docs/performance.md targets that these rows can decide."""
    found = []

    def check(target: str, measured: float | None, goal: float, better_low: bool = False) -> None:
        if measured is not None:
            met = measured <= goal if better_low else measured >= goal
            found.append({"target": target, "measured": measured, "relation": "<=" if better_low else ">=", "goal": goal, "met": met})

    def in_setting(prefix: str, setting: str) -> dict | None:
        return next((r for r in rows if r["name"].startswith(prefix) and r["setting"] == setting), None)

    bares = {r["setting"]: r for r in rows if r["name"] == "(a) bare step"}
    fp32 = bares.get("fp32")
    for setting, bare in bares.items():
        loop, theirs = in_setting("(b)", setting), in_setting("(c)", setting)
        check(f"(b)/(a), {setting}", loop and loop["images_per_s"] / bare["images_per_s"], 0.95)
        check(f"data wait share of step time, {setting}", loop and loop["data_wait_fraction"], 0.05, better_low=True)
        if fp32 and bare is not fp32:
            # bf16 must earn its place (native bf16 runs about 2x fp32); a memory format must not cost.
            goal = 1.6 if setting.startswith("bf16") else 1.0
            check(f"{setting} (a) / fp32 (a) images/s", bare["images_per_s"] / fp32["images_per_s"], goal)
        if tv_name == model_name:  # a like-for-like comparison only for the same network
            check(f"segdil / torchvision {tv_name}, {setting}", theirs and bare["images_per_s"] / theirs["images_per_s"], 1.0)
    fp32_bares = [bare for setting, bare in bares.items() if setting.startswith("fp32")]
    if fp32_bares:
        best = max(fp32_bares, key=lambda bare: bare["conv_ceiling_fraction"])
        check(f"best fp32 (a) GFLOP/s / conv ceiling ({best['setting']})", best["conv_ceiling_fraction"], 0.85)
    theirs_fp32 = in_setting("(c)", "fp32")
    if tv_name == model_name and theirs_fp32:
        best = max(r["images_per_s"] for r in rows if r["name"].startswith("(a)"))
        check(f"segdil best / torchvision {tv_name} fp32", best / theirs_fp32["images_per_s"], 1.6)
    return found


def bench(cfg: DictConfig, out_dir: Path) -> dict:
    """Measure; return the JSON-ready result."""
    load_before = os.getloadavg()[0]
    device = resolve_device(cfg.trainer.device)
    start = time.perf_counter()
    settings = resolve_settings(cfg.bench.settings, device)
    wanted = {str(s.precision) for s in settings}
    ceiling = ceilings(device, {key: DTYPES[key] or torch.float32 for key in wanted})
    rows = []
    for setting in settings:
        rows += bench_setting(cfg, setting, out_dir, ceiling[str(setting.precision)])
    tv_name = torchvision_builder(cfg.bench.torchvision, cfg.model) if cfg.bench.torchvision else None
    return {
        "model": cfg.model.get("name", "?"),
        "crop": rows[0]["input"],
        "batch_size": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "cpu_class": cpu_class(),
        "torch": torch.__version__,
        "load_average_before": load_before,  # other jobs on the machine skew every number
        "ceilings_gflops_per_s": {("fp32" if k == "32" else k): v for k, v in ceiling.items()},
        "rows": rows,
        "targets": targets(rows, cfg.model.get("name", "?"), tv_name),
        "seconds": time.perf_counter() - start,
    }


def table(result: dict) -> str:
    """The result as printed: machine and ceilings, one row per measurement, the targets."""
    ceiling = ", ".join(f"{k} conv {v['conv']:.0f} / matmul {v['matmul']:.0f}" for k, v in result["ceilings_gflops_per_s"].items())
    height, width = result["crop"]
    lines = [
        (
            f"{result['model']}, crop {height}x{width}, batch {result['batch_size']}, {result['num_workers']} loader worker(s), "
            f"{result['device']} ({result['cpu_class']}), {result['torch_threads']} torch threads, {result['cpu_cores']} cores, torch {result['torch']} "
            f"(load average {result['load_average_before']:.1f} before the run)"
        ),
        f"ceilings (GFLOP/s, measured in this run): {ceiling}",
        f"{'measurement':<44} {'setting':<19} {'img/s':>6} {'s/iter':>7} {'GFLOP/s':>8} {'conv%':>6} {'mm%':>5} {'RSS MiB':>8} {'vs (a)':>7}",
    ]
    for r in result["rows"]:
        note = f"  data wait {r['data_wait_fraction']:.1%}" if r.get("data_wait_fraction") is not None else ""
        note += f"  checkpoint {r['checkpoint_seconds']:.2f} s" if "checkpoint_seconds" in r else ""
        note += f"  compile {r['compile_seconds']:.0f} s" if "compile_seconds" in r else ""
        lines.append(
            f"{r['name']:<44} {r['setting']:<19} {r['images_per_s']:>6.2f} {r['s_per_iter']:>7.3f} {r['gflops_per_s']:>8.1f} "
            f"{r['conv_ceiling_fraction']:>6.0%} {r['matmul_ceiling_fraction']:>5.0%} {r['peak_rss_mib']:>8.0f} {r['vs_bare']:>7.2f}{note}"
        )
    lines.append("targets:")
    for t in result["targets"]:
        lines.append(f"  {'met ' if t['met'] else 'MISS'} {t['target']}: {t['measured']:.3f} (target {t['relation']} {t['goal']})")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/bench_train")
def main(cfg: DictConfig) -> None:
    with user_errors():
        result = bench(cfg, run_dir())
        publish(table(result), result, cfg.bench.output)


if __name__ == "__main__":
    main()
