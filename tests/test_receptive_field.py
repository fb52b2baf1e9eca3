"""Receptive fields: the issue's seed numbers, analytic against empirical, gridding, the script."""

import importlib.util
import math

import numpy as np
import pytest
from torch import nn

from conftest import REPO
from segdil.engine.builders import build_model
from segdil.models.context import ContextModule
from segdil.receptive_field import (
    analytic_receptive_field,
    empirical_receptive_field,
    gridding_fraction,
    input_gradient,
    measure_receptive_field,
)


def conv_stack(dilations: list[int], channels: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for dilation in dilations:
        layers += [nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation), nn.ReLU()]
    return nn.Sequential(*[nn.Conv2d(3, channels, 1)] + layers)


def fields_of_3x3(model: nn.Module) -> list[float]:
    return [layer.field for layer in analytic_receptive_field(model).layers if layer.kernel == 3]


def test_dilations_1_2_4_give_3_7_15() -> None:
    assert fields_of_3x3(conv_stack([1, 2, 4])) == [3, 7, 15]


def test_context_module_fields_follow_the_paper() -> None:
    layers = analytic_receptive_field(ContextModule(channels=2)).layers
    assert [layer.field for layer in layers] == [3, 5, 9, 17, 33, 65, 67, 67]
    assert [layer.dilation for layer in layers] == [1, 1, 2, 4, 8, 16, 1, 1]


@pytest.mark.parametrize(
    ("model", "field", "fraction"),
    [
        (conv_stack([1, 2, 4]), 15, 1.0),
        (conv_stack([2, 2, 2]), 13, 49 / 169),  # only every other row and column is seen
        (ContextModule(channels=2), 67, 1.0),
        (ContextModule(channels=2, dilations=[2, 4, 8]), 29, 15**2 / 29**2),  # even offsets only
    ],
)
def test_empirical_extent_equals_analytic_and_gridding(model: nn.Module, field: int, fraction: float) -> None:
    analytic = analytic_receptive_field(model)
    gradient = input_gradient(model, size=field + 20)
    empirical = empirical_receptive_field(gradient)
    assert analytic.field == field
    assert empirical.extent == (field, field) and not empirical.clipped
    assert gridding_fraction(gradient, analytic.field) == pytest.approx(fraction)


@pytest.mark.parametrize("name", ["tiny_fcn", "drn_c26", "drn_d22"])
def test_empirical_extent_equals_analytic_on_models(compose, name: str) -> None:
    """ResNet stem (max pooling as average in the probe), residual merges, DRN stems and
    degridding levels, bilinear upsampling: the executed graph agrees with the rules."""
    model = build_model(compose("train", [f"model={name}", "model.backbone.width=8"]).model, 3)
    rf = measure_receptive_field(model)
    assert rf.empirical.extent == (rf.analytic.field, rf.analytic.field)
    assert not rf.empirical.clipped
    assert rf.gridding == 1.0
    assert rf.analytic.output_stride == 8


def test_global_pooling_sees_the_whole_input(compose) -> None:
    model = build_model(compose("train", ["model=deeplabv3_resnet18", "model.backbone.width=8"]).model, 3)
    rf = measure_receptive_field(model, global_size=96)
    assert math.isinf(rf.analytic.field)
    assert rf.empirical.extent == (96, 96) and rf.empirical.clipped
    assert rf.gridding == 1.0


def test_effective_field_of_averaging_stack_matches_closed_form() -> None:
    """Ten 3x3 convs: the structural gradient is the ten-fold box convolution, a product of
    two 1-d distributions; the smallest centred square with 95% of its mass, computed with numpy."""
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(10)])
    profile = np.array([1.0])
    for _ in range(10):
        profile = np.convolve(profile, np.ones(3) / 3)
    centre = len(profile) // 2
    radius = next(r for r in range(centre + 1) if profile[centre - r : centre + r + 1].sum() ** 2 >= 0.95)
    empirical = empirical_receptive_field(input_gradient(stack, size=41))
    assert empirical.extent == (21, 21)
    assert empirical.effective == 2 * radius + 1 < 21


def test_model_weights_show_what_the_structure_hides() -> None:
    """The identity-initialised context module only passes its centre taps: with its own
    weights one pixel matters; structurally the field is 67."""
    module = ContextModule(channels=3)
    gradient = input_gradient(module, size=80, weights="model")
    assert empirical_receptive_field(gradient).extent == (1, 1)
    assert measure_receptive_field(module, size=80).empirical.extent == (67, 67)


def test_bad_weights_value() -> None:
    with pytest.raises(Exception, match="rf.weights='trained'"):
        input_gradient(conv_stack([1]), size=16, weights="trained")


def test_script_prints_table_and_empirical_figures(capsys) -> None:
    spec = importlib.util.spec_from_file_location("receptive_field_script", REPO / "scripts" / "receptive_field.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["model=dilated_resnet18_context", "model.backbone.width=8"])
    out = capsys.readouterr().out
    assert "model dilated_resnet18_context" in out and "GFLOPs forward at 512x512" in out
    assert "backbone.layer4.1.conv2" in out and "context.layers.10" in out
    assert "analytic receptive field 987" in out and "non-zero extent 987x987" in out
    assert "1.0000 of the analytic field" in out
