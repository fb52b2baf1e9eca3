"""The training engine in-process: exact resume, keep_last, precision, NaN stop, losses."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_TRAIN_OVERRIDES
from segdil.engine.checkpoint import load_checkpoint, load_model_state
from segdil.engine.trainer import Trainer
from segdil.errors import CheckpointError, ConfigError, TrainingError

# No validation or TensorBoard images in the way: these tests are about the optimisation state.
QUIET = [*TINY_TRAIN_OVERRIDES, "trainer.val_every=1000", "trainer.val_panels=0", "trainer.deterministic=true"]


def make_trainer(compose, run_dir, *overrides: str) -> Trainer:
    return Trainer(compose("train", [*QUIET, *overrides]), run_dir)


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(compose, tmp_path) -> None:
    # Dropout, shuffling, augmentation and an epoch boundary (16 images / batch 4) all lie
    # inside the 6 iterations; the stop falls mid-epoch.
    overrides = ("trainer.max_iters=6", "aug=basic")
    make_trainer(compose, tmp_path / "straight", *overrides).fit()
    make_trainer(compose, tmp_path / "split", *overrides).fit(until=3)
    assert load_checkpoint(tmp_path / "split/checkpoints/last.pt")["iteration"] == 3
    resumed = make_trainer(compose, tmp_path / "split", *overrides, "trainer.resume=auto")
    assert resumed.iteration == 3
    resumed.fit()
    straight, split = weights(tmp_path / "straight/checkpoints/last.pt"), weights(tmp_path / "split/checkpoints/last.pt")
    assert straight.keys() == split.keys()
    for key in straight:
        assert torch.equal(straight[key], split[key]), key


def test_resume_auto_without_checkpoint_starts_fresh(compose, tmp_path) -> None:
    assert make_trainer(compose, tmp_path, "trainer.resume=auto").iteration == 0


def test_resume_from_another_model_lists_the_mismatched_keys(compose, tmp_path) -> None:
    make_trainer(compose, tmp_path / "ctx", "model=tiny_context", "trainer.max_iters=1").fit()
    with pytest.raises(CheckpointError, match=r"unexpected \(16\): context\.layers\.0\.bias"):
        make_trainer(compose, tmp_path / "fcn", "model=tiny_fcn", f"trainer.resume={tmp_path / 'ctx/checkpoints/last.pt'}")


def test_load_model_state_reports_missing_unexpected_and_shapes() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 2, 1))
    state = {"0.weight": torch.zeros(5, 3, 3, 3), "0.bias": torch.zeros(5), "extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError) as error:
        load_model_state(model, state, "x.pt")
    message = str(error.value)
    assert "missing (2): 1.bias, 1.weight" in message
    assert "unexpected (1): extra.weight" in message
    assert "shape mismatch (2): 0.bias, 0.weight" in message


def test_keep_last_keeps_the_newest_snapshots(compose, tmp_path) -> None:
    make_trainer(compose, tmp_path, "trainer.ckpt_every=1", "trainer.keep_last=2").fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "iter_0000003.pt", "iter_0000004.pt", "last.pt"]


@pytest.mark.parametrize("overrides", [("trainer.precision=bf16",), ("trainer.channels_last=true",),
                                       ("trainer.precision=bf16", "trainer.channels_last=true")])
def test_mixed_precision_and_channels_last_train(compose, tmp_path, overrides) -> None:
    trainer = make_trainer(compose, tmp_path, "trainer.max_iters=2", *overrides)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    after = trainer.model.state_dict()
    assert summary["iterations"] == 2
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_accumulation_sees_the_samples_of_a_larger_batch(compose, tmp_path) -> None:
    """2 micro-batches of 2 hold the same four samples, with the same augmentation, as one batch of
    4 (the weights differ only through BatchNorm's per-batch statistics)."""
    big = make_trainer(compose, tmp_path / "a", "data.batch_size=4", "trainer.max_iters=1")
    small = make_trainer(compose, tmp_path / "b", "data.batch_size=2", "trainer.accumulate=2", "trainer.max_iters=1")
    big_images = torch.cat([b[0] for b, _ in zip(big.train_loader, range(1))])
    small_images = torch.cat([b[0] for b, _ in zip(small.train_loader, range(2))])
    assert torch.equal(big_images, small_images)  # the same four samples, same augmentation


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(compose, tmp_path) -> None:
    trainer = make_trainer(compose, tmp_path, "trainer.max_iters=50", "trainer.ckpt_every=1", "optim.lr=1e30",
                           "schedule.warmup_iters=0")
    with pytest.raises(TrainingError, match=r"at iteration (\d+)") as error:
        trainer.fit()
    stopped_at = int(error.value.args[0].split("at iteration ")[1].split(":")[0])
    last = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert last["iteration"] == stopped_at - 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_unknown_precision_is_a_config_error(compose, tmp_path) -> None:
    with pytest.raises(Exception, match="trainer.precision=8"):
        make_trainer(compose, tmp_path, "trainer.precision=8")
    with pytest.raises(Exception, match="needs CUDA"):
        make_trainer(compose, tmp_path, "trainer.precision=16", "trainer.device=cpu")


def test_class_weights_from_config_must_match_classes(compose, tmp_path) -> None:
    with pytest.raises(Exception, match="loss.class_weights has 2 values: expected 5"):
        make_trainer(compose, tmp_path, "loss.class_weights=[1.0,2.0]")
    trainer = make_trainer(compose, tmp_path, "loss.class_weights=median_frequency")
    assert trainer.criterion.class_weights.shape == (5,) and math.isfinite(float(trainer.criterion.class_weights.sum()))


def test_every_validation_is_logged_with_its_minutes_and_resume_keeps_the_clock(compose, tmp_path) -> None:
    overrides = ("trainer.max_iters=4", "trainer.val_every=2")
    make_trainer(compose, tmp_path, *overrides).fit(until=2)
    first = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert [entry["iteration"] for entry in first["history"]] == [2] and first["train_seconds"] > 0
    resumed = make_trainer(compose, tmp_path, *overrides, "trainer.resume=auto")
    summary = resumed.fit()
    history = summary["history"]
    assert [entry["iteration"] for entry in history] == [2, 4]
    assert history[0] == first["history"][0]  # the first part's validation, carried over
    assert first["train_seconds"] / 60 <= history[1]["minutes"] <= summary["train_minutes"]
    assert history[1]["mIoU"] == summary["final"]["mIoU"]
    assert len(summary["load_average_at_start"]) == 3


def test_ema_is_the_average_of_the_weights_after_each_step(compose, tmp_path) -> None:
    """ema_1 = w_1, ema_t = d * ema_(t-1) + (1 - d) * w_t, for parameters and BatchNorm statistics;
    it is what validation and checkpoints' `model` hold, the optimizer's weights are `trained_model`."""
    trainer = make_trainer(compose, tmp_path, "trainer.max_iters=3", "trainer.ema_decay=0.75")
    expected: dict[str, torch.Tensor] = {}
    for step in (1, 2, 3):
        trainer.fit(until=step)
        for key, value in trainer.model.state_dict().items():
            if value.is_floating_point():
                expected[key] = value.clone() if step == 1 else 0.75 * expected[key] + 0.25 * value
    state = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert state["ema_updates"] == 3 and trainer.evaluated_model is trainer.ema.module
    for key, value in expected.items():
        assert torch.allclose(state["model"][key], value, atol=1e-6), key
        assert torch.equal(state["trained_model"][key], trainer.model.state_dict()[key]), key
    assert any(not torch.equal(state["model"][key], state["trained_model"][key]) for key in expected)


def test_resume_with_ema_is_exact(compose, tmp_path) -> None:
    overrides = ("trainer.max_iters=4", "trainer.ema_decay=0.9")
    make_trainer(compose, tmp_path / "straight", *overrides).fit()
    make_trainer(compose, tmp_path / "split", *overrides).fit(until=2)
    make_trainer(compose, tmp_path / "split", *overrides, "trainer.resume=auto").fit()
    straight = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")
    split = load_checkpoint(tmp_path / "split/checkpoints/last.pt")
    for part in ("model", "trained_model"):
        for key in straight[part]:
            assert torch.equal(straight[part][key], split[part][key]), (part, key)


def test_ema_decay_out_of_range_and_resume_without_ema_are_config_errors(compose, tmp_path) -> None:
    from segdil.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer.ema_decay=1.5: expected null or a value in \(0, 1\)"):
        make_trainer(compose, tmp_path / "bad", "trainer.ema_decay=1.5")
    make_trainer(compose, tmp_path / "plain", "trainer.max_iters=1").fit()
    with pytest.raises(ConfigError, match="trained without an EMA"):
        make_trainer(compose, tmp_path / "plain", "trainer.ema_decay=0.9", "trainer.resume=auto")


def test_cudnn_benchmark_is_on_for_cuda_unless_deterministic() -> None:
    from segdil.engine.trainer import cudnn_benchmark
    from segdil.errors import ConfigError

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert cudnn_benchmark(None, False, cuda) and not cudnn_benchmark(None, True, cuda) and not cudnn_benchmark(None, False, cpu)
    assert not cudnn_benchmark(False, False, cuda) and cudnn_benchmark(True, False, cpu)
    with pytest.raises(ConfigError, match="cudnn_benchmark=true contradicts trainer.deterministic=true"):
        cudnn_benchmark(True, True, cuda)


def test_an_overflowed_float16_step_is_skipped_and_not_counted_as_progress(compose, tmp_path) -> None:
    """torch's GradScaler also runs on the CPU: with an infinite gradient in the 2nd step it skips
    that optimizer step and halves its scale; the trainer then takes 3 more real steps, its
    schedule steps 3 times, and the checkpoint carries the scaler's state and the count."""
    trainer = make_trainer(compose, tmp_path, "trainer.max_iters=3")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=True)
    calls = {"n": 0}

    def poison_second_step(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == 2 else grad

    parameter = next(trainer.model.parameters())
    parameter.register_hook(poison_second_step)
    summary = trainer.fit()
    assert summary["iterations"] == 3 and summary["skipped_steps"] == 1 and calls["n"] == 4
    assert trainer.scheduler.last_epoch == 3
    state = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert state["skipped_steps"] == 1 and state["scaler"]["scale"] == 512.0
