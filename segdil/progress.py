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

# Steps left out of the time estimate: the first ones build loader workers, warm allocators
# and, for bf16/channels_last, pick kernels.
WARMUP_STEPS = 2


def on_terminal() -> bool:
    """True when stderr is a terminal, so a redrawn bar is seen as one line."""
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[T] | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, silent unless `enabled` and stderr is a terminal."""
    return tqdm(iterable, disable=not (enabled and on_terminal()), dynamic_ncols=True, **kwargs)


class ProgressLog:
    """Plain progress lines for a training run of `max_iters` steps starting at `start`: one line
    with the measured step time and the projected time to `max_iters` after `estimate_after`
    steps, then (when `plain`, i.e. no bar is drawn) one line every `every_seconds`."""

    def __init__(
        self,
        start: int,
        max_iters: int,
        plain: bool,
        estimate_after: int = 10,
        every_seconds: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.start, self.max_iters, self.plain = start, max_iters, plain
        self.estimate_after, self.every_seconds, self.clock = estimate_after, every_seconds, clock
        self.step_seconds: list[float] = []
        self.began = self.last_line = clock()

    def step(self, iteration: int, seconds: float, loss: float, images_per_s: float) -> None:
        """Record one optimizer step (`iteration` is the count after it) and log what is due."""
        self.step_seconds.append(seconds)
        if len(self.step_seconds) == WARMUP_STEPS + self.estimate_after and iteration < self.max_iters:
            measured = statistics.median(self.step_seconds[WARMUP_STEPS:])
            log.info(
                "measured step time %.3f s (median of iterations %d-%d): the %d iterations left take about %.1f min "
                "of steps, validation and checkpoints not included",
                measured,
                self.start + WARMUP_STEPS + 1,
                iteration,
                self.max_iters - iteration,
                measured * (self.max_iters - iteration) / 60,
            )
        now = self.clock()
        if self.plain and now - self.last_line >= self.every_seconds and iteration < self.max_iters:
            self.last_line = now
            elapsed = now - self.began
            left = elapsed / (iteration - self.start) * (self.max_iters - iteration)
            log.info(
                "iter %d/%d (%.0f%%) | loss %.3f | %.1f images/s | %.1f min elapsed, about %.1f min to go",
                iteration,
                self.max_iters,
                100 * iteration / self.max_iters,
                loss,
                images_per_s,
                elapsed / 60,
                left / 60,
            )
