"""debug= presets: fast runs the whole path, overfit learns one batch, profile writes a trace."""

from __future__ import annotations

import json
import logging
from itertools import islice

from conftest import TINY_TRAIN_OVERRIDES
from segdil.engine.trainer import Trainer

# The tiny model and images of the other tests; the presets set the rest.
TINY = [o for o in TINY_TRAIN_OVERRIDES if o.split("=")[0] in {"model.backbone.width", "dataset.size", "dataset.lengths"}]


def test_debug_fast_runs_train_validation_and_checkpoints(compose, tmp_path) -> None:
    cfg = compose("train", ["debug=fast", *TINY])
    summary = Trainer(cfg, tmp_path).fit()
    assert summary["iterations"] == 4 and [entry["iteration"] for entry in summary["history"]] == [2, 4]
    assert (tmp_path / "checkpoints/last.pt").is_file()


def test_debug_overfit_trains_on_one_batch_and_its_loss_falls(compose, tmp_path) -> None:
    cfg = compose("train", ["debug=overfit", *TINY, "data.batch_size=4", "trainer.max_iters=60", "trainer.val_every=60"])
    trainer = Trainer(cfg, tmp_path)
    assert trainer.train_loader.sampler.batches_per_epoch == 1 and len(trainer.train_set) == 16
    trainer.fit()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    losses = [event.value for event in events.Scalars("train/loss")]
    assert losses[-1] < 0.5 * losses[0]


def test_debug_profile_writes_a_trace_and_logs_the_slowest_operators(compose, tmp_path, caplog) -> None:
    cfg = compose("train", ["debug=profile", *TINY, "data.batch_size=4"])
    with caplog.at_level(logging.INFO, logger="segdil.engine.profiler"):
        Trainer(cfg, tmp_path).fit()
    traces = list((tmp_path / "profile").glob("*.pt.trace.json"))
    assert len(traces) == 1 and json.loads(traces[0].read_text())["traceEvents"]
    assert "profile of 5 steps" in caplog.text and "Self CPU" in caplog.text


def test_train_limit_keeps_the_first_samples(compose, tmp_path) -> None:
    trainer = Trainer(compose("train", [*TINY_TRAIN_OVERRIDES, "data.train_limit=8"]), tmp_path)
    sampler = trainer.train_loader.sampler
    indices = {index for index, _ in islice(sampler, sampler.samples_per_rank)}  # one epoch of the endless order
    assert sampler.batches_per_epoch == 2 and indices == set(range(8))
