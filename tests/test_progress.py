"""Progress for terminals and log files: bars only on a terminal, plain lines and the time estimate."""

from __future__ import annotations

import logging

from segdil import progress
from segdil.progress import ProgressLog, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bars_are_drawn_only_on_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    assert progress_bar(range(3)).disable
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    assert not progress_bar(range(3)).disable
    assert progress_bar(range(3), enabled=False).disable


def test_time_estimate_after_the_first_steps_and_a_plain_line_a_minute(caplog) -> None:
    clock = FakeClock()
    log = ProgressLog(start=0, max_iters=100, plain=True, estimate_after=4, every_seconds=60.0, clock=clock)
    step_times = [5.0, 3.0, 0.5, 0.7, 0.5, 0.4] + [1.0] * 94  # two slow warm-up steps left out
    with caplog.at_level(logging.INFO, logger="segdil.progress"):
        for iteration, seconds in enumerate(step_times, start=1):
            clock.now += seconds
            log.step(iteration, seconds, loss=0.5, images_per_s=8.0)
    lines = [record.getMessage() for record in caplog.records]
    # early: median of the first 3 steps (5, 3, 0.5) is 3 s; 97 iterations left: 291 s = 4.8 min
    assert lines[0].startswith("step time 3.000 s (median of the first 3): the 97 iterations left take about 4.8 min")
    # refined: median of iterations 3-6 is 0.5 s; 94 iterations left: 47 s = 0.8 min
    assert lines[1].startswith("measured step time 0.500 s (median of iterations 3-6): the 94 iterations left take about 0.8 min")
    plain = lines[2:]
    # 10.1 s after 6 steps, then 1 s a step: lines at 60 s (iteration 56) and 120 s is past the end
    assert len(plain) == 1 and plain[0].startswith("iter 56/100 (56%) | loss 0.500 | 8.0 images/s | 1.0 min elapsed")
    assert "about 0.8 min to go" in plain[0]


def test_no_plain_lines_when_a_bar_is_drawn(caplog) -> None:
    clock = FakeClock()
    log = ProgressLog(start=0, max_iters=50, plain=False, estimate_after=2, every_seconds=1.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="segdil.progress"):
        for iteration in range(1, 51):
            clock.now += 2.0
            log.step(iteration, 2.0, loss=1.0, images_per_s=4.0)
    assert [record.getMessage()[:16] for record in caplog.records] == ["step time 2.000 ", "measured step ti"]


def test_short_runs_get_no_estimate(caplog) -> None:
    log = ProgressLog(start=0, max_iters=3, plain=True, estimate_after=10, every_seconds=1e9)
    with caplog.at_level(logging.INFO, logger="segdil.progress"):
        for iteration in range(1, 4):
            log.step(iteration, 0.1, loss=1.0, images_per_s=1.0)
    assert not caplog.records


def test_the_early_estimate_comes_after_three_steps_or_thirty_seconds() -> None:
    """Slow steps (an emulated-bf16 CPU takes a minute each) get their estimate as soon as 30 s
    have passed, not after the refined estimate's 12 steps."""
    for step_seconds, steps_to_estimate in ((1.0, 3), (20.0, 2), (55.0, 1)):
        clock, estimates = FakeClock(), []
        log = ProgressLog(start=0, max_iters=100, plain=False, clock=clock, on_estimate=estimates.append)
        for iteration in range(1, 6):
            clock.now += step_seconds
            log.step(iteration, step_seconds, loss=1.0, images_per_s=1.0)
            if estimates:
                break
        assert estimates == [step_seconds] and iteration == steps_to_estimate
