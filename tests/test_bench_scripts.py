"""scripts/bench_train.py and scripts/bench_eval.py measure and report on tiny inputs, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from segdil.machine import cpu_class, native_bf16
from segdil.metrics import ConfusionMatrix
from test_datasets import load_script

TINY = ["~experiment", "model=tiny_context", "dataset.size=32", "data.batch_size=2", "data.val_batch_size=2"]


def test_bench_train_rows_flops_and_targets(tmp_path: Path, compose) -> None:
    once = ["bench.steps=1", "bench.warmup=1", "bench.torchvision=deeplabv3_mobilenet_v3_large", "bench.torchvision_steps=1"]
    cfg = compose("scripts/bench_train", [*TINY, *once])
    bench = load_script("bench_train")
    result = bench.bench(cfg, tmp_path)
    names = [(r["name"], r["setting"]) for r in result["rows"]]
    # bench.settings=auto: fp32, then channels_last in what precision=auto runs here (no emulated bf16)
    fastest = "bf16" if native_bf16() else "fp32"
    assert names == [
        (name, setting)
        for setting in ("fp32", f"{fastest} channels_last")
        for name in ("(a) bare step", "(b) train.py loop", "(c) torchvision deeplabv3_mobilenet_v3_large")
    ]
    bare, loop, theirs = result["rows"][:3]
    assert bare["vs_bare"] == 1.0 and loop["vs_bare"] == pytest.approx(loop["images_per_s"] / bare["images_per_s"])
    assert 0.0 <= loop["data_wait_fraction"] < 1.0 and result["crop"] == [32, 32]
    # (a) and (b) run the same model on the same input; torchvision's MobileNet DeepLabv3 is bigger
    assert bare["gflop_per_step"] == loop["gflop_per_step"] < theirs["gflop_per_step"]
    for r in result["rows"]:
        assert r["images_per_s"] == pytest.approx(2 / r["s_per_iter"]) and r["peak_rss_mib"] > 0
        assert r["gflops_per_s"] == pytest.approx(r["gflop_per_step"] / r["s_per_iter"])
    assert {"fp32", fastest} == set(result["ceilings_gflops_per_s"])
    decided = {t["target"].split(",")[0].split(" (")[0] for t in result["targets"]}
    assert {"(b)/(a)", "data wait share of step time", "best fp32", f"{fastest} channels_last"} <= decided
    assert result["cpu_class"] == cpu_class()
    # tiny_context is not torchvision's model: no like-for-like comparison is claimed
    assert not any("torchvision" in t["target"] for t in result["targets"])
    lines = bench.table(result).splitlines()
    assert lines[0].startswith("tiny_context, crop 32x32, batch 2") and "targets:" in lines


def test_bench_eval_times_metric_updates_inside_the_loop(compose) -> None:
    strategies = "bench.strategies=[{name: whole}, {name: slide, mode: slide, crop: [16, 16], stride: [12, 12]}]"
    cfg = compose("scripts/bench_eval", [*TINY, "bench.images=4", strategies])
    bench = load_script("bench_eval")
    original = ConfusionMatrix.update
    result = bench.bench(cfg)
    assert ConfusionMatrix.update is original  # the timing patch is undone
    assert [r["strategy"] for r in result["rows"]] == ["whole", "slide"]
    for r in result["rows"]:
        assert 0 < r["metric_seconds"] < r["seconds"] and r["metric_fraction"] == pytest.approx(r["metric_seconds"] / r["seconds"])
        assert r["images_per_s"] == pytest.approx(4 / r["seconds"])
    assert result["rows"][1]["eval"]["mode"] == "slide"
    assert bench.table(result).splitlines()[-1].startswith("metric accumulation <= 2% of evaluation time")
