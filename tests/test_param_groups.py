"""optim_groups: lr and weight-decay multipliers for biases and normalisation layers, as
mmsegmentation's paramwise_cfg; all at 1 is the single group of before."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from segdil.engine.param_groups import build_optimizer
from segdil.engine.schedule import poly_with_warmup
from segdil.errors import ConfigError

SGD = OmegaConf.create({"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.01})
CAFFE = {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0, "norm_decay_mult": 0.5}


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False), nn.GroupNorm(1, 2))


def settings_of(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    return {id(p): (group["lr"], group["weight_decay"]) for group in optimizer.param_groups for p in group["params"]}


def test_neutral_multipliers_give_the_one_group_of_before() -> None:
    model = small_model()
    for groups in (None, {}, {"bias_lr_mult": 1.0, "bias_decay_mult": 1.0, "norm_decay_mult": 1.0}):
        optimizer = build_optimizer(SGD, model, groups)
        assert len(optimizer.param_groups) == 1
        assert [id(p) for p in optimizer.param_groups[0]["params"]] == [id(p) for p in model.parameters()]


def test_each_kind_of_parameter_gets_its_multipliers() -> None:
    model = small_model()
    conv, bn, _, conv2, gn = model
    optimizer = build_optimizer(SGD, model, CAFFE)
    got = settings_of(optimizer)
    assert got[id(conv.weight)] == (0.1, 0.01) and got[id(conv2.weight)] == (0.1, 0.01)
    assert got[id(conv.bias)] == (pytest.approx(0.2), 0.0)
    for norm in (bn, gn):  # a norm layer's bias follows norm_decay_mult, not the bias multipliers
        assert got[id(norm.weight)] == (0.1, pytest.approx(0.005)) and got[id(norm.bias)] == (0.1, pytest.approx(0.005))
    assert len(got) == len(list(model.parameters()))
    assert optimizer.param_groups[0]["lr"] == 0.1  # the base group first: it is the lr the logs show


def test_the_multipliers_change_the_update_and_survive_the_schedule() -> None:
    """One SGD step (no momentum, no decay): a bias with lr x 2 moves twice as far as with the
    plain optimizer; after the poly schedule has stepped, its lr is still twice the base."""
    def net() -> nn.Module:  # no norm layer: a bias right before BatchNorm gets no gradient
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))

    plain_model, doubled_model = net(), net()
    sgd = OmegaConf.merge(SGD, {"weight_decay": 0.0})
    plain, doubled = build_optimizer(sgd, plain_model, None), build_optimizer(sgd, doubled_model, {"bias_lr_mult": 2.0})
    images = torch.randn(2, 3, 8, 8)
    for model, optimizer in ((plain_model, plain), (doubled_model, doubled)):
        model(images).square().mean().backward()
        optimizer.step()
    start = net()[2]
    plain_step = plain_model[2].bias - start.bias
    doubled_step = doubled_model[2].bias - start.bias
    assert plain_step.abs().sum() > 0
    torch.testing.assert_close(doubled_step, 2 * plain_step)
    torch.testing.assert_close(doubled_model[2].weight, plain_model[2].weight)

    schedule = poly_with_warmup(doubled, max_iters=10, warmup_iters=2)
    for _ in range(5):
        doubled.step()
        schedule.step()
    base, bias = doubled.param_groups[0]["lr"], doubled.param_groups[1]["lr"]
    assert 0 < base < 0.1 and bias == pytest.approx(2 * base)


def test_a_shared_parameter_is_in_one_group_once() -> None:
    model = small_model()
    model.append(model[0])  # the first conv twice
    optimizer = build_optimizer(SGD, model, CAFFE)
    listed = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert len(listed) == len(set(listed)) == len(list(model.parameters()))


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"bias_lr_mult": -1}, "optim_groups.bias_lr_mult=-1: expected a number >= 0 (1.0 = unchanged)"),
        ({"norm_decay_mult": "zero"}, "optim_groups.norm_decay_mult='zero': expected a number >= 0 (1.0 = unchanged)"),
        ({"bias_lr": 2.0}, "optim_groups.bias_lr: no such key; expected bias_lr_mult, bias_decay_mult or norm_decay_mult"),
    ],
)
def test_bad_multipliers_are_one_line(groups: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_optimizer(SGD, small_model(), groups)
    assert str(info.value) == message


def test_the_trainer_builds_its_optimizer_with_the_groups_and_resumes_them(compose, tmp_path) -> None:
    """optim_groups reaches train.py's optimizer; a run stopped and resumed keeps its groups."""
    from conftest import TINY_TRAIN_OVERRIDES
    from segdil.engine.trainer import Trainer

    overrides = [*TINY_TRAIN_OVERRIDES, "optim.lr=0.05", "optim_groups.bias_lr_mult=2.0", "optim_groups.norm_decay_mult=0.0"]
    trainer = Trainer(compose("train", overrides), tmp_path)
    norm_weight = next(m.weight for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d))
    group = next(g for g in trainer.optimizer.param_groups if any(p is norm_weight for p in g["params"]))
    assert (group["initial_lr"], group["weight_decay"]) == (0.05, 0.0)  # "lr" is in its warmup already
    assert sorted(group["initial_lr"] for group in trainer.optimizer.param_groups) == [0.05, 0.05, 0.1]
    trainer.fit(until=2)
    resumed = Trainer(compose("train", [*overrides, "trainer.resume=auto"]), tmp_path)
    assert resumed.iteration == 2
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [g["lr"] for g in trainer.optimizer.param_groups]
    assert len(Trainer(compose("train", TINY_TRAIN_OVERRIDES), tmp_path / "plain").optimizer.param_groups) == 1
