"""scripts/plot_runs.py: val mIoU against training minutes, one colour (and line style) per label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdil.errors import ConfigError
from test_datasets import load_script

# matplotlib's first three default colours (C0, C1, C2)
C0, C1, C2 = (31, 119, 180), (255, 127, 14), (44, 160, 44)


def fake_run(root: Path, name: str, shift: float) -> Path:
    run = root / name
    run.mkdir()
    history = [{"iteration": 500 * k, "minutes": 5.0 * k, "mIoU": 0.3 + 0.05 * k + shift, "pixel_acc": 0.8} for k in range(1, 5)]
    (run / "metrics.json").write_text(json.dumps({"history": history}))
    return run


def has_colour(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((np.abs(pixels[..., :3].astype(int) - colour).sum(axis=-1) < 30).any())


def test_runs_with_one_label_share_a_colour(tmp_path: Path) -> None:
    plot_runs = load_script("plot_runs")
    runs = [
        plot_runs.parse_run(f"{fake_run(tmp_path, 'ctx_seed0', 0.0)}=context"),
        plot_runs.parse_run(f"{fake_run(tmp_path, 'ctx_seed1', 0.02)}=context"),
        plot_runs.parse_run(str(fake_run(tmp_path, "twin", -0.05))),
    ]
    assert runs[2][1] == "twin"
    out = tmp_path / "figure.png"
    plot_runs.plot(runs, out, "mIoU", "test")
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert pixels.shape == (504, 840, 3)
    assert has_colour(pixels, C0) and has_colour(pixels, C1) and not has_colour(pixels, C2)


def test_more_than_ten_labels_stay_distinct() -> None:
    """matplotlib has ten default colours; the eleventh label reuses C0 but dashed, with squares."""
    plot_runs = load_script("plot_runs")
    styles = [plot_runs.line_style(index) for index in range(30)]
    assert len({tuple(sorted(style.items())) for style in styles}) == 30
    assert styles[10]["color"] == styles[0]["color"] and styles[10]["linestyle"] != styles[0]["linestyle"]


def test_a_long_legend_goes_beside_the_axes_on_a_wider_figure(tmp_path: Path) -> None:
    plot_runs = load_script("plot_runs")
    runs = [(fake_run(tmp_path, f"run{k}", 0.01 * k), f"label {k}") for k in range(11)]
    out = tmp_path / "many.png"
    plot_runs.plot(runs, out, "mIoU", "test")
    assert Image.open(out).size == (1320, 504)  # 11 x 4.2 inches at 120 dpi, against 7 x 4.2 for ten labels or fewer


def test_a_run_without_history_is_a_one_line_error(tmp_path: Path) -> None:
    plot_runs = load_script("plot_runs")
    (tmp_path / "old").mkdir()
    (tmp_path / "old/metrics.json").write_text(json.dumps({"best_mIoU": 0.5}))
    with pytest.raises(ConfigError, match="old/metrics.json: no validation history"):
        plot_runs.read_history(tmp_path / "old")
    with pytest.raises(ConfigError, match="missing/metrics.json: cannot read"):
        plot_runs.read_history(tmp_path / "missing")


def test_the_horizontal_axis_can_be_the_iteration(tmp_path: Path) -> None:
    """Runs timed on machines of different speed compare by iteration (--x iteration)."""
    plot_runs = load_script("plot_runs")
    history = plot_runs.read_history(fake_run(tmp_path, "a", 0.0))
    assert plot_runs.series(history, "iteration", "mIoU")[0] == [500, 1000, 1500, 2000]
    minutes, values = plot_runs.series(history, "minutes", "mIoU")
    assert minutes == [5.0, 10.0, 15.0, 20.0] and values == pytest.approx([0.35, 0.4, 0.45, 0.5])
    out = tmp_path / "iteration.png"
    plot_runs.plot([plot_runs.parse_run(str(tmp_path / "a"))], out, "mIoU", "test", x="iteration")
    assert has_colour(np.asarray(Image.open(out).convert("RGB")), C0)


def test_mean_draws_one_line_per_label_at_the_mean_of_its_runs(tmp_path: Path) -> None:
    """--mean: the seeds of one recipe as one line, at each validation the mean of minutes and mIoU."""
    plot_runs = load_script("plot_runs")
    seeds = [plot_runs.read_history(fake_run(tmp_path, name, shift)) for name, shift in (("s0", 0.0), ("s1", 0.02))]
    seeds[1][0]["minutes"] = 7.0
    minutes, values = plot_runs.mean_series(seeds, "minutes", "mIoU")
    assert minutes == [6.0, 10.0, 15.0, 20.0] and values == pytest.approx([0.36, 0.41, 0.46, 0.51])
    out = tmp_path / "mean.png"
    runs = [(tmp_path / "s0", "recipe"), (tmp_path / "s1", "recipe"), (fake_run(tmp_path, "twin", -0.05), "twin")]
    plot_runs.plot(runs, out, "mIoU", "test", mean=True)
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert has_colour(pixels, C0) and has_colour(pixels, C1) and not has_colour(pixels, C2)


def test_mean_of_runs_validated_at_other_iterations_is_a_one_line_error(tmp_path: Path) -> None:
    plot_runs = load_script("plot_runs")
    short = plot_runs.read_history(fake_run(tmp_path, "short", 0.0))[:3]
    with pytest.raises(ConfigError, match="--mean: the runs of one label validated at different iterations"):
        plot_runs.mean_series([plot_runs.read_history(tmp_path / "short"), short], "minutes", "mIoU")
