"""The early step-time estimate held against what a recipe promises on this CPU class.

A recipe states its expected minutes per CPU class (`trainer.expected_minutes`); when this
machine's estimate is over `SLOW_FACTOR` times it, the user hears so within the first minute,
with the likely reasons, instead of finding out a day later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from segdil.engine.precision import Precision

SLOW_FACTOR = 1.5
# A load average above this share of the cores at the start means other work shares the CPU.
BUSY_LOAD_PER_CORE = 0.5


def slow_reasons(precision: Precision, machine: Mapping, load_average: float, on_cuda: bool) -> list[str]:
    """The likely causes of a slow run on this machine, most likely first."""
    reasons = []
    if not on_cuda and precision.name == "bf16" and not machine["cpu_native_bf16"]:
        reasons.append("bf16 is emulated on this CPU (no AVX512-BF16 or AMX): trainer.precision=auto picks fp32")
    cores = machine["cpu_count"] or 1
    if machine["torch_threads"] < cores:
        reasons.append(f"torch uses {machine['torch_threads']} of {cores} cores (OMP_NUM_THREADS or torch.set_num_threads)")
    if load_average > BUSY_LOAD_PER_CORE * cores:
        reasons.append(f"other work shares the CPU (load average {load_average:.2f} at the start, {cores} cores)")
    return reasons


def pace_verdict(
    estimated_minutes: float, expected_minutes: Mapping[str, float], cpu_class: str, reasons: list[str]
) -> tuple[bool, str]:
    """(slow, one line): this run's estimate against the recipe's expectation for `cpu_class`."""
    expected = expected_minutes.get(cpu_class)
    if expected is None:
        listed = ", ".join(f"{name} {minutes:g} min" for name, minutes in expected_minutes.items())
        return False, f"estimated {estimated_minutes:.0f} min of steps; the recipe expects {listed}, nothing for {cpu_class}"
    ratio = estimated_minutes / expected
    if ratio <= SLOW_FACTOR:
        return False, (
            f"estimated {estimated_minutes:.0f} min of steps against the recipe's {expected:g} min on {cpu_class} "
            f"({ratio:.1f}x, within the {SLOW_FACTOR:g}x tolerated)"
        )
    why = "; ".join(reasons) if reasons else "no cause found on this machine (a slower CPU model of its class?)"
    return True, (
        f"this run will take about {estimated_minutes:.0f} min of steps, {ratio:.1f}x the recipe's {expected:g} min "
        f"on {cpu_class}. Likely: {why}"
    )


def load_average_now() -> list[float]:
    """The 1, 5 and 15-minute load averages (zeros where the platform has none)."""
    return [round(load, 2) for load in os.getloadavg()] if hasattr(os, "getloadavg") else [0.0, 0.0, 0.0]
