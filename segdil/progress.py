"""Progress that reads well in a terminal and in a log file.

tqdm redraws its bar with carriage returns, which in a file or a pipe become one endless line;
so bars are drawn only when stderr (where tqdm writes) is a terminal, and long runs log plain
lines instead: the projected time after the first steps, then one line every `every_seconds`.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")

# Steps left out of the refined time estimate: the first ones build loader workers, warm
# allocators and, for bf16/channels_last, pick kernels.
WARMUP_STEPS = 2
# The early estimate: the median of the first steps (the median drops the slow first one), made
# after this many steps or once this many seconds have passed, whichever comes first.
EARLY_STEPS = 3
EARLY_SECONDS = 30.0


def on_terminal() -> bool:
    """True when stderr is a terminal, so a redrawn bar is seen as one line."""
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[T] | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, silent unless `enabled` and stderr is a terminal."""
    return tqdm(iterable, disable=not (enabled and on_terminal()), dynamic_ncols=True, **kwargs)


class ProgressLog:
    """Plain progress lines for a training run of `max_iters` steps starting at `start`: an early
    step-time estimate within the first steps (handed to `on_estimate` as seconds per step), a
    refined one after `estimate_after` steps past the warm-up, then (when `plain`, i.e. no bar is
    drawn) one line every `every_seconds`."""

    def __init__(
        self,
        start: int,
        max_iters: int,
        plain: bool,
        estimate_after: int = 10,
        every_seconds: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
        on_estimate: Callable[[float], None] | None = None,
    ) -> None:
        self.start, self.max_iters, self.plain = start, max_iters, plain
        self.estimate_after, self.every_seconds, self.clock = estimate_after, every_seconds, clock
        self.on_estimate = on_estimate
        self.step_seconds: list[float] = []
        self.began = self.last_line = clock()
        self.estimated_early = False

    def step(self, iteration: int, seconds: float, loss: float, images_per_s: float) -> None:
        """Record one optimizer step (`iteration` is the count after it) and log what is due."""
        self.step_seconds.append(seconds)
        now = self.clock()
        left = self.max_iters - iteration
        early_due = len(self.step_seconds) >= EARLY_STEPS or now - self.began >= EARLY_SECONDS
        if not self.estimated_early and early_due and left > 0:
            self.estimated_early = True
            measured = statistics.median(self.step_seconds)
            log.info(
                "step time %.3f s (median of the first %d): the %d iterations left take about %.1f min of steps, "
                "validation not included",
                measured, len(self.step_seconds), left, measured * left / 60,
            )
            if self.on_estimate is not None:
                self.on_estimate(measured)
        if len(self.step_seconds) == WARMUP_STEPS + self.estimate_after and left > 0:
            measured = statistics.median(self.step_seconds[WARMUP_STEPS:])
            log.info(
                "measured step time %.3f s (median of iterations %d-%d): the %d iterations left take about %.1f min "
                "of steps, validation and checkpoints not included",
                measured, self.start + WARMUP_STEPS + 1, iteration, left, measured * left / 60,
            )
        if self.plain and now - self.last_line >= self.every_seconds and left > 0:
            self.last_line = now
            elapsed = now - self.began
            to_go = elapsed / (iteration - self.start) * left
            log.info(
                "iter %d/%d (%.0f%%) | loss %.3f | %.1f images/s | %.1f min elapsed, about %.1f min to go",
                iteration, self.max_iters, 100 * iteration / self.max_iters, loss, images_per_s, elapsed / 60, to_go / 60,
            )


class Throughput:
    """Images, step seconds and data-wait seconds summed over steps (a logging window or a whole run)."""

    def __init__(self) -> None:
        self.images, self.seconds, self.wait = 0, 0.0, 0.0

    def add(self, images: int, seconds: float, wait: float) -> None:
        self.images += images
        self.seconds += seconds
        self.wait += wait

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.seconds if self.seconds else None

    @property
    def wait_fraction(self) -> float | None:
        return self.wait / self.seconds if self.seconds else None
