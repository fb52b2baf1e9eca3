"""Receptive fields: the issue's seed numbers, analytic against empirical, gridding, the script."""

import importlib.util
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO
from segdil.engine.builders import build_model
from segdil.models.context import ContextModule
from segdil.receptive_field import (
    analytic_receptive_field,
    empirical_receptive_field,
    frame_gradient,
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


# Fields by hand, input pixels, adding (kernel - 1) x dilation x stride-before per conv along the
# longest path, + 8 for the bilinear upsampling from stride 8 (2 taps at spacing 8).
# DRN-D-22: stem 7, 9, 11 (stride 2); layer1 15, 23, 31, 39 (stride 4); layer2 47 (stride 8), 63,
# 79, 95; layer3 (dilation 2, first conv too, as fyu/drn) + 4 x 32 = 223; layer4 (dilation 4)
# + 4 x 64 = 479; layer5, layer6 (one conv each at 2, 1) 511, 527; upsampling 535.
# DRN-C-26: stem 7, 9, 11, 13 (stride 2), 17; layer1 21 (stride 4), 29, 37, 45; layer2 53 (stride
# 8), 69, 85, 101; layer3 229; layer4 485; layer5 (two convs at 2) 549; layer6 (two at 1) 581; 589.
@pytest.mark.parametrize(("name", "field"), [("tiny_fcn", 75), ("drn_c26", 589), ("drn_d22", 535)])
def test_empirical_extent_equals_analytic_on_models(compose, name: str, field: int) -> None:
    """ResNet stem (max pooling as average in the probe), residual merges, DRN stems and
    degridding levels, bilinear upsampling: the executed graph agrees with the rules."""
    model = build_model(compose("train", [f"model={name}", "model.backbone.width=8"]).model, 3)
    rf = measure_receptive_field(model)
    assert rf.analytic.field == field
    assert rf.empirical.extent == (field, field)
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


# --- real frames: the model's own gradient, averaged over images ----------------------------------


def test_frame_gradient_is_the_predicted_class_gradient_averaged_over_frames() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 3, padding=2, dilation=2)
    frames = torch.rand(2, 3, 9, 11)
    singles = [frame_gradient(model, frame[None]) for frame in frames]
    mean = frame_gradient(model, frames)
    assert mean.shape == (9, 11)
    assert torch.allclose(mean, (singles[0] + singles[1]) / 2)
    # One dilated 3x3 layer: exactly its nine taps around the central output pixel (4, 5).
    taps = {(4 + dy, 5 + dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)}
    assert {tuple(p) for p in mean.nonzero().tolist()} == taps
    # By hand for the first frame: d log softmax(predicted class) at the centre.
    image = frames[:1].clone().requires_grad_()
    log_probs = model(image).log_softmax(dim=1)[0, :, 4, 5]
    log_probs.max().backward()
    assert torch.allclose(singles[0], image.grad.abs().sum(dim=(0, 1)).double())


def test_script_measures_a_model_on_real_frames(capsys, caplog) -> None:
    spec = importlib.util.spec_from_file_location("receptive_field_script", REPO / "scripts" / "receptive_field.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tiny = ["model=tiny_context", "model.backbone.width=8", "dataset.size=64", "rf.weights=model"]
    script.main([*tiny, "rf.frames=3"])
    out = capsys.readouterr().out
    assert "empirical (model weights, mean over 3 frames, 64x64 input)" in out
    with pytest.raises(SystemExit):
        script.main([*tiny, "rf.frames=3", "rf.weights=structural"])
    assert "rf.frames=3: real frames probe the model's own weights; set rf.weights=model" in caplog.text
