"""The training loop: iteration based, resumable, mixed precision, single or multi-process.

One iteration is one optimizer step over `trainer.accumulate` micro-batches. Validation,
checkpoints and TensorBoard happen on their own intervals; only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.contrib.logging import logging_redirect_tqdm

from segdil.config_checks import TRAIN_KEYS, check_values
from segdil.data.checks import check_labels, evenly_spaced
from segdil.data.labels import voc_colormap
from segdil.data.loader import build_dataset, build_eval_loader, build_train_loader
from segdil.engine.builders import build_loss, build_model, build_transforms, resolve_device
from segdil.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_state,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from segdil.engine.closing import closing_lines, single_class_note
from segdil.engine.distributed import all_reduce_sum, init_distributed, local_device
from segdil.engine.evaluator import evaluate, peak_memory_mib
from segdil.engine.frozen_cache import FromFrontEnd, cache_front_end
from segdil.engine.inference import Predictor
from segdil.engine.pace import load_average_now, pace_verdict, slow_reasons
from segdil.engine.param_groups import build_optimizer
from segdil.engine.precision import autocast_factory, choose_precision, grad_scaler
from segdil.engine.profiler import step_profiler
from segdil.engine.tb import RunLogger
from segdil.errors import ConfigError, TrainingError
from segdil.machine import describe, machine_info
from segdil.metrics import SegmentationMetrics, format_table
from segdil.models.summary import log_model_summary
from segdil.progress import ProgressLog, Throughput, on_terminal, progress_bar
from segdil.viz import prediction_panels

log = logging.getLogger(__name__)

# float16 overflows tolerated over a run before it is called divergent: the GradScaler halves
# its scale at each, so a healthy run needs a few dozen at most.
MAX_SKIPPED_STEPS = 1000


def cudnn_benchmark(setting: bool | None, deterministic: bool, device: torch.device) -> bool:
    """trainer.cudnn_benchmark: null means on for CUDA (cuDNN times its algorithms for each input
    shape once, then runs the fastest) unless trainer.deterministic, where it must stay off."""
    if setting is None:
        return device.type == "cuda" and not deterministic
    if setting and deterministic:
        raise ConfigError("trainer.cudnn_benchmark=true contradicts trainer.deterministic=true: cuDNN's benchmark picks algorithms by timing")
    return bool(setting)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Turn SIGINT / SIGTERM into a request (the list fills with the signal number) that the
    loop honours after the current step, so a checkpoint is written before exiting."""
    received: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in handled}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class StepResult:
    """One optimizer step: mean loss, images seen by this process, seconds, seconds waiting for data."""

    loss: float
    images: int
    seconds: float
    wait: float


class Trainer:
    """Builds everything a run needs from the composed config, then `fit()` trains it."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        check_values(cfg, TRAIN_KEYS)
        tc = cfg.trainer
        self.run_dir = run_dir
        self.checkpoint_dir = run_dir / "checkpoints"
        device = resolve_device(tc.device)
        self.dist = init_distributed(device)
        self.device = local_device(device, self.dist)
        if not self.dist.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        seed_everything(cfg.seed)
        if tc.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = cudnn_benchmark(tc.cudnn_benchmark, tc.deterministic, self.device)

        train_transform, self.val_transform = build_transforms(cfg.aug)
        self.train_set = build_dataset(cfg.dataset, cfg.dataset.train_split, train_transform)
        self.val_set = build_dataset(cfg.dataset, cfg.dataset.val_split, self.val_transform)
        if self.dist.is_main or cfg.data.skip_bad:  # leaving samples out must happen on every rank alike
            check_labels((self.train_set, self.val_set), cfg.data.check_labels, cfg.data.skip_bad)
        self.class_names = list(self.train_set.class_names)
        self.palette = self.train_set.palette or voc_colormap(len(self.class_names))
        data = cfg.data
        self.val_loader = build_eval_loader(
            self.val_set, data.val_batch_size, data.num_workers, self.device, self.dist.rank, self.dist.world_size
        )

        model = build_model(cfg.model, len(self.class_names))
        if tc.sync_bn and self.dist.enabled and self.device.type != "cuda":
            raise ConfigError("trainer.sync_bn=true needs CUDA: torch's SyncBatchNorm runs only on GPU modules")
        if tc.sync_bn and self.dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.precision = choose_precision(tc.precision, self.device)
        self.autocast = autocast_factory(self.precision.name, self.device)
        self.net: nn.Module = self.model
        self.train_loader = self._build_train_loader()
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=device_ids)

        self.ema = self._build_ema(tc.ema_decay)
        self.optimizer = build_optimizer(cfg.optim, self.model, cfg.optim_groups)
        self.scheduler = instantiate(cfg.schedule, optimizer=self.optimizer, max_iters=tc.max_iters)
        self.scaler = grad_scaler(self.precision.name, self.device)
        self.criterion = build_loss(cfg.loss, self.train_set, getattr(self.model, "aux_weight", 0.0)).to(self.device)
        self.machine = machine_info()
        self.load_average = load_average_now()
        self.iteration = 0
        self.skipped_steps = 0  # optimizer steps the fp16 GradScaler skipped (gradients overflowed)
        self.best_miou = float("-inf")
        # Time to accuracy: wall-clock seconds of training before this call (a resumed run goes on
        # counting), and one entry per validation with the minutes it was reached at.
        self.seconds_before = 0.0
        self.history: list[dict] = []
        self.clock_start = time.perf_counter()
        if tc.resume:
            self._resume(tc.resume)

    # ------------------------------------------------------------------ the loop
    def fit(self, until: int | None = None) -> dict:
        """Train up to `trainer.max_iters` (or stop early at iteration `until`, saving last.pt, so
        that a later resume continues the same schedule); return the run summary, which is also
        written as metrics.json."""
        tc = self.cfg.trainer
        target = min(until or tc.max_iters, tc.max_iters)
        logger = self._start_logging()
        self.clock_start = time.perf_counter()
        metrics, interrupted = None, None
        batches, window, total = self._batches(), Throughput(), Throughput()
        progress = self._progress_log()
        with stop_requests() as stop, logging_redirect_tqdm(), self._bar() as bar, self._profiler() as profiler_step:
            while self.iteration < target:
                step = self._train_step(batches)
                if step is None:  # fp16 gradients overflowed: no progress, counted
                    continue
                for throughput in (window, total):
                    throughput.add(step.images * self.dist.world_size, step.seconds, step.wait)
                bar.update(1)
                profiler_step()
                if self.dist.is_main:
                    progress.step(self.iteration, step.seconds, step.loss, total.images_per_s)
                if self._due(tc.log_every):
                    self._log_train(logger, bar, step.loss, window)
                    window = Throughput()
                if self._due(tc.val_every):
                    metrics = self._validate(logger)
                if self._due(tc.ckpt_every) or self.iteration == target:
                    self._save_last()
                if self._agreed_stop(stop):
                    interrupted = signal.Signals(stop[0]).name if stop else "signal on another rank"
                    self._save_last()
                    log.warning("%s at iteration %d: saved %s, exiting", interrupted, self.iteration, self.checkpoint_dir / "last.pt")
                    break
        return self._finish(logger, metrics, interrupted, total)

    def _due(self, every: int) -> bool:
        """True at every `every`-th iteration and at the last one."""
        return self.iteration % every == 0 or self.iteration == self.cfg.trainer.max_iters

    def _start_logging(self) -> RunLogger:
        """TensorBoard (events in the run directory; layout, config, model, machine and hparams at
        once) and the run's first lines: one for the model and data, one for the precision."""
        logger = RunLogger(self.run_dir, enabled=self.dist.is_main)
        machine = describe(self.machine)
        summary = log_model_summary(self.model, self.train_set[0][0].shape[-2:]) if self.dist.is_main else None
        if summary is not None:
            log.info(
                "%s | %d train / %d val images | %s x %d process(es)",
                summary.headline(), len(self.train_set), len(self.val_set), self.device, self.dist.world_size,
            )
        precision = f"precision {self.precision.name} ({self.precision.reason})"
        logger.start(self.cfg, self.class_names, summary, machine=f"{machine}; {precision}", precision=self.precision.name)
        log.info("%s on %s", precision, machine)
        log.debug("load average at start (1, 5, 15 min): %s", self.load_average)
        return logger

    def _progress_log(self) -> ProgressLog:
        tc = self.cfg.trainer
        plain = tc.progress and self.dist.is_main and not on_terminal()
        return ProgressLog(self.iteration, tc.max_iters, plain, every_seconds=tc.progress_every, on_estimate=self._check_pace)

    def _check_pace(self, step_seconds: float) -> None:
        """The early estimate against the recipe's `trainer.expected_minutes` for this CPU class."""
        expected = self.cfg.trainer.expected_minutes
        if not expected:
            return
        minutes = step_seconds * self.cfg.trainer.max_iters / 60
        reasons = slow_reasons(self.precision, self.machine, self.load_average[0], self.device.type == "cuda")
        slow, line = pace_verdict(minutes, dict(expected), self.machine["cpu_class"], reasons)
        (log.warning if slow else log.info)("%s", line)

    def _bar(self):
        tc = self.cfg.trainer
        return progress_bar(initial=self.iteration, total=tc.max_iters, desc="train", enabled=tc.progress and self.dist.is_main)

    def _profiler(self):
        return step_profiler(self.run_dir, self.cfg.trainer.profile_steps if self.dist.is_main else 0, self.device)

    def _log_train(self, logger: RunLogger, bar, loss: float, window: Throughput) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
        logger.train_scalars(self.iteration, loss, lr, window.images_per_s, window.wait_fraction)

    def _finish(self, logger: RunLogger, metrics: SegmentationMetrics | None, interrupted: str | None, total: Throughput) -> dict:
        """metrics.json, the final table and the closing lines."""
        elapsed = time.perf_counter() - self.clock_start
        final = metrics.as_dict(self.class_names) if metrics else None
        summary = {
            "iterations": self.iteration,
            "seconds": round(elapsed, 3),
            "step_images_per_s": total.images_per_s,
            "data_wait_fraction": total.wait_fraction,
            "best_mIoU": self.best_miou,
            "train_minutes": round(self._train_seconds() / 60, 3),
            "precision": self.precision._asdict(),
            "machine": self.machine,
            "load_average_at_start": self.load_average,
            "history": self.history,
            "final": final,
            "interrupted": interrupted,
            "skipped_steps": self.skipped_steps,
            "peak_memory_mib": round(peak_memory_mib(self.device), 1),
            "skipped_samples": len(self.train_set.skipped) + len(self.val_set.skipped),
            "skipped": {"train": self.train_set.skipped, "val": self.val_set.skipped},
            "run_dir": str(self.run_dir),
        }
        if self.dist.is_main:
            (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        if metrics and not interrupted:
            log.info("final validation:\n%s", format_table(metrics, self.class_names))
        note = single_class_note(metrics, self.class_names) if metrics else None
        done = (
            f"done: {self.iteration} iterations in {elapsed:.0f} s, "
            f"data wait {100 * (summary['data_wait_fraction'] or 0.0):.1f}% of step time"
        )
        closing = [*([note] if note else []), done, *closing_lines(self.run_dir, self.history)]
        for line in closing:
            log.info("%s", line)
        complete = not interrupted and self.iteration >= self.cfg.trainer.max_iters
        logger.finish("  \n".join(closing), self.iteration, complete)
        return summary

    def _build_train_loader(self) -> DataLoader:
        """Endless shuffled batches of the augmented training images; with `trainer.frozen_cache`,
        of the frozen front end's outputs on the un-augmented images (computed here, once), and
        `self.net` becomes the part of the model after the front end."""
        cfg, data = self.cfg, self.cfg.data
        dataset, workers = self.train_set, data.num_workers
        if cfg.trainer.frozen_cache:
            images = build_dataset(cfg.dataset, cfg.dataset.train_split, self.val_transform)
            dataset = cache_front_end(self.model, images, data.val_batch_size, self.device, self.autocast)
            self.net, workers = FromFrontEnd(self.model, dataset.label_size), 0  # the cache is in memory
        return build_train_loader(
            dataset, data.batch_size, workers, cfg.seed, self.device, self.dist.rank, self.dist.world_size,
            data.train_limit, endless=True,
        )

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Micro-batches for ever, epoch after epoch, starting where `self.iteration` left off."""
        sampler = self.train_loader.sampler
        consumed = (self.iteration + self.skipped_steps) * self.cfg.trainer.accumulate
        sampler.set_epoch(*divmod(consumed, sampler.batches_per_epoch))
        yield from self.train_loader  # endless: one iterator, so no stall at epoch starts

    def _train_step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> StepResult | None:
        """One optimizer step over `trainer.accumulate` micro-batches; None when float16 gradients
        overflowed and the GradScaler skipped it."""
        tc = self.cfg.trainer
        started = time.perf_counter()
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, images_seen, waited = 0.0, 0, 0.0
        for micro in range(tc.accumulate):
            wait_start = time.perf_counter()
            images, masks = next(batches)
            waited += time.perf_counter() - wait_start
            images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
            masks = masks.to(self.device, non_blocking=True)
            sync = micro == tc.accumulate - 1 or not self.dist.enabled
            with self.net.no_sync() if not sync else nullcontext(), self.autocast():
                loss = self.criterion(self.net(images), masks) / tc.accumulate
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss is {loss.item()} at iteration {self.iteration + 1}: stopped without saving; "
                    f"the last good checkpoint is {self._last_good()}"
                )
            self.scaler.scale(loss).backward()
            total_loss += loss.item()
            images_seen += images.shape[0]
        if tc.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if scale is not None and self.scaler.get_scale() < scale:
            self._count_skipped_step()
            return None
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.iteration += 1
        return StepResult(total_loss, images_seen, time.perf_counter() - started, waited)

    def _build_ema(self, decay: float | None) -> AveragedModel | None:
        """An exponential moving average of the weights and BatchNorm statistics (torch's
        AveragedModel), updated after every optimizer step; validation, best.pt and eval.py use it."""
        if decay is None:
            return None
        if not 0.0 < float(decay) < 1.0:
            raise ConfigError(f"trainer.ema_decay={decay}: expected null or a value in (0, 1), e.g. 0.998")
        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights that are validated and deployed: the EMA when trainer.ema_decay is set."""
        return self.model if self.ema is None else self.ema.module

    def _count_skipped_step(self) -> None:
        """float16 gradients overflowed: the GradScaler skipped the optimizer step and lowered its
        scale. The step is no progress (no iteration, no schedule or EMA step); it is counted."""
        self.skipped_steps += 1
        log.warning("iteration %d: float16 gradients overflowed, step skipped (loss scale now %g)", self.iteration + 1, self.scaler.get_scale())
        if self.skipped_steps > MAX_SKIPPED_STEPS:
            raise TrainingError(
                f"{self.skipped_steps} optimizer steps skipped for float16 overflow by iteration {self.iteration}: "
                "the loss diverges (lower optim.lr, or train with trainer.precision=bf16 or 32)"
            )

    def _agreed_stop(self, stop: list[int]) -> bool:
        """All processes stop at the same iteration if any of them was signalled."""
        flag = torch.tensor([1 if stop else 0], device=self.device)  # nccl reduces CUDA tensors only
        if self.dist.enabled:
            all_reduce_sum(flag)
        return bool(flag.item())

    # ------------------------------------------------------------------ validation
    def _validate(self, logger: RunLogger) -> SegmentationMetrics:
        tc = self.cfg.trainer
        predictor = Predictor(self.evaluated_model, len(self.class_names), autocast=self.autocast)
        confusion = evaluate(predictor, self.val_loader, len(self.class_names), self.device, tc.progress and self.dist.is_main)
        metrics = confusion.compute()
        seconds = self._train_seconds()
        self.history.append(
            {"iteration": self.iteration, "minutes": round(seconds / 60, 3), "mIoU": metrics.miou, "pixel_acc": metrics.pixel_acc}
        )
        log.info("iter %d (%.1f min): val mIoU %.4f, pixel acc %.4f", self.iteration, seconds / 60, metrics.miou, metrics.pixel_acc)
        if metrics.miou > self.best_miou:
            self.best_miou = metrics.miou
            if self.dist.is_main:
                save_checkpoint(self.checkpoint_dir / "best.pt", self._state())
        logger.validation_results(self.iteration, confusion, seconds, self.best_miou, self._panels())
        return metrics

    @torch.no_grad()
    def _panels(self) -> torch.Tensor | None:
        """Input, ground truth and prediction for `trainer.val_panels` val images spread evenly
        over the split (consecutive frames of a video look alike), the same at every validation."""
        indices = evenly_spaced(len(self.val_set), self.cfg.trainer.val_panels)
        if not self.dist.is_main or len(indices) == 0:
            return None
        images, masks = zip(*(self.val_set[int(index)] for index in indices))
        images, masks = torch.stack(images), torch.stack(masks)
        with self.autocast():
            predictions = self.evaluated_model(images.to(self.device, memory_format=self.memory_format)).argmax(dim=1)
        return prediction_panels(images, masks, predictions.cpu(), self.palette, self.class_names)

    def _train_seconds(self) -> float:
        """Wall-clock seconds since training started (validation and checkpoints included), across resumes."""
        return self.seconds_before + time.perf_counter() - self.clock_start

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        """Everything needed to rebuild the model and to resume the run exactly. `model` holds the
        evaluated weights (the EMA when on, so eval.py and init_from take those); the optimizer's own
        weights are then `trained_model`."""
        ema = {} if self.ema is None else {"trained_model": self.model.state_dict(), "ema_updates": int(self.ema.n_averaged)}
        return {
            "model": self.evaluated_model.state_dict(),
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "skipped_steps": self.skipped_steps,
            "best_miou": self.best_miou,
            "train_seconds": self._train_seconds(),
            "history": self.history,
            "rng": capture_rng_state(),
            "class_names": self.class_names,
            "palette": [list(colour) for colour in self.palette],
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
        }

    def _save_last(self) -> None:
        if not self.dist.is_main:
            return
        state = self._state()
        save_checkpoint(self.checkpoint_dir / "last.pt", state)
        if self.cfg.trainer.keep_last > 0:
            save_checkpoint(self.checkpoint_dir / f"iter_{self.iteration:07d}.pt", state)
            prune_checkpoints(self.checkpoint_dir, self.cfg.trainer.keep_last)

    def _last_good(self) -> str:
        path = self.checkpoint_dir / "last.pt"
        return str(path) if path.is_file() else "none (no checkpoint was written yet)"

    def _resume(self, resume: str) -> None:
        path = self.checkpoint_dir / "last.pt" if resume == "auto" else Path(resume)
        if resume == "auto" and not path.is_file():
            log.info("trainer.resume=auto: no %s yet, starting from scratch", path)
            return
        state = load_checkpoint(path)
        load_model_state(self.model, state.get("trained_model", state["model"]), path)
        if self.ema is not None:
            if "ema_updates" not in state:
                raise ConfigError(f"{path}: trainer.ema_decay is set but this checkpoint was trained without an EMA")
            load_model_state(self.ema.module, state["model"], path)
            self.ema.n_averaged.fill_(state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.best_miou = state["iteration"], state["best_miou"]
        self.skipped_steps = state.get("skipped_steps", 0)
        # Checkpoints written before time-to-accuracy logging have no clock: it restarts at 0.
        self.seconds_before = state.get("train_seconds", 0.0)
        self.history = list(state.get("history", []))
        restore_rng_state(state["rng"])
        log.info("resumed from %s at iteration %d (best val mIoU %.4f)", path, self.iteration, self.best_miou)
