"""Time to accuracy: draw val mIoU against training minutes for any set of train.py runs.

    python scripts/plot_runs.py RUN_DIR[=LABEL] ... --out time_to_accuracy.png
    python scripts/plot_runs.py ... --x iteration   # runs timed on machines of different speed
    python scripts/plot_runs.py ... --mean          # one line per label: the mean of its runs

Each run's `metrics.json` (written by train.py) holds one entry per validation with the
wall-clock minutes of training it was reached at (validation and checkpoints included). Runs
given the same LABEL are drawn in one colour (seeds of one recipe), each with its own line, or
with --mean as one line, their mean.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from segdil.cli import user_errors
from segdil.errors import ConfigError

log = logging.getLogger("segdil")


def read_history(run: Path) -> list[dict]:
    """The validations of one run, from `<run>/metrics.json` (or that file named directly)."""
    path = run if run.suffix == ".json" else run / "metrics.json"
    try:
        history = json.loads(path.read_text()).get("history")
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read a train.py metrics.json ({error})") from None
    if not history:
        raise ConfigError(f"{path}: no validation history (written by train.py since time-to-accuracy logging)")
    return history


def parse_run(argument: str) -> tuple[Path, str]:
    """`RUN_DIR=LABEL` or `RUN_DIR` (labelled by its folder name)."""
    path, _, label = argument.partition("=")
    return Path(path), label or Path(path).name


AXIS_LABELS = {
    "minutes": "training minutes (wall clock, validation included)",
    "iteration": "iteration (optimizer steps)",
}


def series(history: list[dict], x: str, metric: str) -> tuple[list[float], list[float]]:
    """The points of one run: `x` (minutes or iteration) and `metric` of each validation."""
    return [entry[x] for entry in history], [entry[metric] for entry in history]


def mean_series(histories: list[list[dict]], x: str, metric: str) -> tuple[list[float], list[float]]:
    """One line for the runs of one label (seeds of one recipe): at each validation the mean of
    `x` and of `metric` over the runs, which must have validated at the same iterations."""
    iterations = [[entry["iteration"] for entry in history] for history in histories]
    if any(other != iterations[0] for other in iterations):
        raise ConfigError(f"--mean: the runs of one label validated at different iterations ({iterations})")
    points = np.array([series(history, x, metric) for history in histories])  # runs x (x, metric) x validations
    positions, values = points.mean(axis=0)
    return positions.tolist(), values.tolist()


DEFAULT_COLOURS = 10  # matplotlib's colour cycle, C0-C9


def line_style(index: int) -> dict:
    """The `index`-th label's line: matplotlib's ten colours, then again dashed with squares, and so on,
    so that up to 30 labels stay distinct."""
    linestyle, marker = [("-", "o"), ("--", "s"), (":", "^")][index // DEFAULT_COLOURS % 3]
    return {"color": f"C{index % DEFAULT_COLOURS}", "linestyle": linestyle, "marker": marker}


def plot(runs: list[tuple[Path, str]], out: Path, metric: str, title: str, x: str = "minutes", mean: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.2), dpi=120)
    labelled: dict[str, list[list[dict]]] = {}  # label -> its runs' histories, in the order given
    for path, label in runs:
        labelled.setdefault(label, []).append(read_history(path))
    styles = {label: line_style(index) for index, label in enumerate(labelled)}  # the legend names each label once
    for label, histories in labelled.items():
        lines = [mean_series(histories, x, metric)] if mean else [series(history, x, metric) for history in histories]
        for index, (positions, values) in enumerate(lines):
            axes.plot(positions, values, markersize=3, label=label if index == 0 else None, **styles[label])
    if len(styles) <= DEFAULT_COLOURS:
        axes.legend(fontsize=8)
    else:  # a legend this long would hide the curves: it goes beside the axes, on a wider figure
        figure.set_size_inches(11, max(4.2, 0.16 * len(styles) + 0.8))
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_xlabel(AXIS_LABELS[x])
    axes.set_ylabel(f"val {metric}")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out)
    pyplot.close(figure)
    log.info("wrote %s (%d runs)", out, len(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="train.py run directories (or metrics.json files), optionally =LABEL")
    parser.add_argument("--out", type=Path, default=Path("time_to_accuracy.png"), help="the PNG to write")
    parser.add_argument("--metric", default="mIoU", choices=("mIoU", "pixel_acc"))
    parser.add_argument("--x", default="minutes", choices=tuple(AXIS_LABELS), help="the horizontal axis")
    parser.add_argument("--title", default="val mIoU against training time")
    parser.add_argument("--mean", action="store_true", help="one line per label, the mean of its runs (seeds)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors():
        plot([parse_run(run) for run in args.runs], args.out, args.metric, args.title, args.x, args.mean)


if __name__ == "__main__":
    main()
