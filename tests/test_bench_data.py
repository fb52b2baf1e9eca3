"""scripts/bench_data.py measures and reports on a tiny CamVid tree (in process, one batch)."""

from __future__ import annotations

from pathlib import Path

from test_datasets import load_script
from trees import camvid_mask, make_camvid


def test_bench_data_table(tmp_path: Path, compose) -> None:
    for split in ("train", "val"):
        make_camvid(tmp_path, split, {f"{split}{k}": camvid_mask(k) for k in range(4)})
    tiny = ["model.backbone.width=8", "aug.crop_size=[16,16]", "data.batch_size=2"]
    bench_once = ["bench.workers=[0]", "bench.batches=1", "bench.warmup_steps=0"]
    cfg = compose("scripts/bench_data", [f"dataset.root={tmp_path}", *tiny, *bench_once])
    bench = load_script("bench_data")
    result = bench.bench(cfg, tmp_path)
    (row,) = result["rows"]
    assert result["crop"] == [16, 16] and row["workers"] == 0 and row["keeps_up"] in (True, False)
    assert min(result["step_images_per_s"], row["load_images_per_s"], row["measured_fed_images_per_s"]) > 0
    # With no workers, loading and stepping take turns: the expected rate is below both.
    assert row["expected_fed_images_per_s"] < min(result["step_images_per_s"], row["load_images_per_s"])
    table = bench.table(result)
    assert table.splitlines()[0].startswith("CamVid train, crop 16x16, batch 2, model tiny_context")
    assert table.splitlines()[-1] == f"verdict: {result['verdict']}"
