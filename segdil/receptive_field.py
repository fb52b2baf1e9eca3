"""Receptive fields of a model: analytic per layer, empirical from the input gradient, gridding.

Analytic (Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019): a layer of kernel k and dilation d, on a map whose neighbouring pixels
are j input pixels apart (the cumulative stride), widens the field by (k - 1) * d * j and
multiplies j by its stride. The model is traced with torch.fx and walked in forward order.
Where paths merge (residual additions, ASPP's concatenation) the field is the largest of the
inputs, that of the longest path: a residual shortcut never widens it. Global pooling makes it
the whole input ("global"); bilinear resizing adds one input step j (an output pixel mixes two
neighbours). Kernels are square in every segdil model; figures are sides in input pixels.

Empirical: the gradient, with respect to the input, of one central output pixel (summed over
channels), in eval mode. Its non-zero extent should equal the analytic field; the side of the
smallest square around the gradient's centroid that holds 95 % of its mass is the effective
receptive field (Luo et al., NeurIPS 2016); the fraction of pixels inside the analytic field
whose gradient is non-zero is the gridding diagnostic (49/169 for three 3x3 convolutions all at
dilation 2: they see every other row and column).

A gradient also vanishes for reasons other than structure: ReLUs that are off for this input,
max pooling (it routes the gradient to one pixel per window), zero-initialised weights (the
last BN of each residual block; the identity-initialised context module passes only its centre
tap). So the default probe, `weights="structural"`, ignores the model's weights: it runs the
traced graph on one-channel float64 maps of ones, with every convolution replaced by an
averaging filter of the same kernel, stride, padding and dilation, batch norm and ReLU by the
identity (all values stay positive, so a ReLU would pass them anyway), max pooling by average
pooling over the same window, and concatenation by a sum. Every path of the architecture then
carries gradient, so the non-zero set is exactly the structural support, and a probe costs one
channel per layer whatever the model's width. Float64 keeps a product of a hundred 1/9 factors
far from underflow. `weights="model"` measures the model as it is (trained, say, through
`model.init_from`) on one fixed random input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from segdil.errors import ConfigError

WEIGHTS = ("structural", "model")
# Probe inputs are multiples of 32, the largest stride of any segdil backbone.
SIZE_MULTIPLE = 32
# Taps per axis of each interpolation mode: resizing widens the field by (taps - 1) input steps.
RESIZE_TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4}
LOCAL_KINDS = ("conv", "max pool", "avg pool")
IDENTITY_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass(frozen=True)
class LayerRF:
    """One row of the analytic table: a convolution, pooling or resizing, in forward order."""

    name: str
    kind: str
    kernel: int
    stride: float  # this layer's own stride (below 1 for upsampling)
    dilation: int
    jump: float  # cumulative stride: input pixels between neighbouring output pixels (inf for a 1x1 map)
    field: float  # receptive field side in input pixels; math.inf when global


@dataclass(frozen=True)
class AnalyticRF:
    layers: list[LayerRF]
    field: float  # of the model's output
    output_stride: int  # the coarsest cumulative stride of a local convolution or pooling


@dataclass(frozen=True)
class EmpiricalRF:
    shape: tuple[int, int]  # height and width of the probe input
    extent: tuple[int, int]  # rows x columns of the bounding box of non-zero gradient
    effective: int  # side of the centred square holding 95 % of the gradient's mass
    nonzero: int  # input pixels with non-zero gradient
    clipped: bool  # the non-zero gradient touches the input's border: the field is larger than the input


@dataclass(frozen=True)
class ReceptiveField:
    analytic: AnalyticRF
    empirical: EmpiricalRF
    gridding: float  # fraction of the analytic field (within the input) with non-zero gradient
    weights: str  # what was probed: "structural weights", "model weights", "model weights, mean over N frames"


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode (BN statistics frozen, dropout off), then restore the previous mode."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


class _StructuralProbe(fx.Interpreter):
    """Runs a traced model as the structural probe described in the module docstring, and
    records the spatial size of every 4-d tensor it computes."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        super().__init__(graph_module)
        self.sizes: dict[fx.Node, tuple[int, int]] = {}

    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        if isinstance(result, torch.Tensor) and result.dim() == 4:
            self.sizes[node] = (result.shape[-2], result.shape[-1])
        return result

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        module, x = self.fetch_attr(target), args[0]
        if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
            weight = x.new_full((1, 1, *module.kernel_size), 1.0 / math.prod(module.kernel_size))
            return F.conv2d(x, weight, None, module.stride, module.padding, module.dilation)
        if isinstance(module, IDENTITY_MODULES):
            return x
        if isinstance(module, nn.MaxPool2d) and module.dilation in (1, (1, 1)):
            return F.avg_pool2d(x, module.kernel_size, module.stride, module.padding, module.ceil_mode)
        if isinstance(module, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)):
            return F.adaptive_avg_pool2d(x, module.output_size)
        if isinstance(module, (nn.AvgPool2d, nn.Upsample)):
            return super().call_module(target, args, kwargs)
        raise NotImplementedError(f"structural receptive-field probe: no rule for {module} at {target}")

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        if target is torch.cat and kwargs.get("dim", args[1] if len(args) > 1 else 0) == 1:
            return sum(args[0])
        return super().call_function(target, args, kwargs)  # additions, resizing: as they are


def _probe(model: nn.Module, size: int) -> tuple[fx.GraphModule, _StructuralProbe, torch.Tensor, torch.Tensor]:
    """Trace `model` (eval mode) and run the structural probe on a size x size input of ones."""
    with eval_mode(model), torch.enable_grad():
        graph_module = fx.symbolic_trace(model)
        probe = _StructuralProbe(graph_module)
        images = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        output = probe.run(images)
    return graph_module, probe, images, _first_tensor(output)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, dict):
        return _first_tensor(next(iter(output.values())))
    if isinstance(output, (tuple, list)):
        return _first_tensor(output[0])
    return output


def _square(value: int | Sequence[int], what: str, name: str) -> int:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if pair[0] != pair[1]:
        raise NotImplementedError(f"{name}: non-square {what} {pair}; the analytic table assumes square kernels")
    return int(pair[0])


def _layer(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, int, int] | None:
    """(kind, kernel or taps, dilation) of a node that changes the receptive field, else None."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.Conv2d):
            return "conv", _square(module.kernel_size, "kernel", node.target), _square(module.dilation, "dilation", node.target)
        if isinstance(module, nn.MaxPool2d):
            return "max pool", _square(module.kernel_size, "kernel", node.target), _square(module.dilation, "dilation", node.target)
        if isinstance(module, nn.AvgPool2d):
            return "avg pool", _square(module.kernel_size, "kernel", node.target), 1
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return "global pool", 0, 1
        if isinstance(module, nn.Upsample):
            return "resize", RESIZE_TAPS[module.mode], 1
    if node.op == "call_function" and node.target is F.interpolate:
        return "resize", RESIZE_TAPS[node.kwargs.get("mode", "nearest")], 1
    return None


def analytic_receptive_field(model: nn.Module, probe_size: int = 128) -> AnalyticRF:
    """The table of module docstring's rules, one row per convolution, pooling or resizing.

    Cumulative strides come from the map sizes of a structural probe run at `probe_size`
    (a multiple of every stride), which also covers resizing to a size computed at run time.
    """
    graph_module, probe, _, _ = _probe(model, probe_size)
    modules = dict(graph_module.named_modules())
    field: dict[fx.Node, float] = {}
    jump: dict[fx.Node, float] = {}
    layers: list[LayerRF] = []
    for node in graph_module.graph.nodes:
        inputs = [n for n in node.all_input_nodes if n in field]
        if node.op == "output":
            output_field = max(field[n] for n in inputs)
        if node not in probe.sizes:
            continue
        field_in = max((field[n] for n in inputs), default=1.0)
        jump_in = max((jump[n] for n in inputs), default=1.0)
        # A 1x1 map (after global pooling) has no neighbouring pixels: no cumulative stride.
        size = probe.sizes[node][0]
        field[node], jump[node] = field_in, math.inf if probe.sizes[node] == (1, 1) else probe_size / size
        layer = _layer(node, modules)
        if layer is None:
            continue
        kind, kernel, dilation = layer
        if kind == "global pool":
            field[node] = math.inf
        elif kind == "resize" and jump[node] == jump_in:
            continue  # resizing to the same size does nothing
        else:  # a 1x1 kernel adds nothing, also after a 1x1 map (where 0 * inf would be nan)
            steps = (kernel - 1) * dilation
            field[node] = field_in + steps * jump_in if steps else field_in
        name = node.target if node.op == "call_module" else node.name
        layers.append(LayerRF(name, kind, kernel, jump[node] / jump_in, dilation, jump[node], field[node]))
    # After global pooling the map is 1x1: its "stride" is the probe size, not a resolution.
    strides = [layer.jump for layer in layers if layer.kind in LOCAL_KINDS and not math.isinf(layer.field)]
    return AnalyticRF(layers, output_field, int(max(strides, default=1)))


def input_gradient(model: nn.Module, size: int, weights: str = "structural", seed: int = 0) -> torch.Tensor:
    """|d (central output pixel, summed over channels) / d input|, summed over input channels: (size, size).

    `weights="model"` feeds the model itself a 3-channel (RGB) normal random input drawn from `seed`.
    """
    if weights not in WEIGHTS:
        raise ConfigError(f"rf.weights={weights!r}: expected one of {list(WEIGHTS)}")
    if weights == "structural":
        _, _, images, output = _probe(model, size)
    else:
        parameter = next(model.parameters())
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(1, 3, size, size, generator=generator).to(parameter).requires_grad_()
        with eval_mode(model), torch.enable_grad():
            output = _first_tensor(model(images))
    with torch.enable_grad():
        centre = output[..., output.shape[-2] // 2, output.shape[-1] // 2].sum()
        (gradient,) = torch.autograd.grad(centre, images)
    return gradient.abs().sum(dim=(0, 1))


def frame_gradient(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """|d log p(predicted class at the central output pixel) / d input|, summed over input
    channels and averaged over `frames` (N x 3 x H x W, as the model is fed): (H, W).

    On real frames the predicted class's log-probability is what the decision depends on; the
    probes' sum over channels would be the one direction the softmax ignores."""
    parameter = next(model.parameters())
    total = torch.zeros(frames.shape[-2:], dtype=torch.float64)
    with eval_mode(model), torch.enable_grad():
        for frame in frames:
            image = frame[None].to(parameter).requires_grad_()
            log_probs = _first_tensor(model(image)).log_softmax(dim=1)
            centre = log_probs[0, :, log_probs.shape[-2] // 2, log_probs.shape[-1] // 2]
            (gradient,) = torch.autograd.grad(centre.max(), image)
            total += gradient.abs().sum(dim=(0, 1)).double().cpu()
    return total / len(frames)


def empirical_receptive_field(gradient: torch.Tensor, mass: float = 0.95) -> EmpiricalRF:
    """Extent, effective field (smallest square around the centroid holding `mass`) and
    non-zero count of an input gradient map from `input_gradient`."""
    height, width = gradient.shape
    nonzero = gradient != 0
    rows = nonzero.any(dim=1).nonzero().flatten()
    cols = nonzero.any(dim=0).nonzero().flatten()
    if rows.numel() == 0:
        raise ValueError("the output pixel does not depend on the input (the gradient is zero everywhere)")
    total = gradient.sum()
    ys = torch.arange(height, dtype=gradient.dtype)
    xs = torch.arange(width, dtype=gradient.dtype)
    centre_y = torch.round((gradient.sum(dim=1) * ys).sum() / total)
    centre_x = torch.round((gradient.sum(dim=0) * xs).sum() / total)
    distance = torch.maximum((ys - centre_y).abs()[:, None], (xs - centre_x).abs()[None, :]).long()
    ring_mass = torch.bincount(distance.flatten(), weights=gradient.flatten())
    radius = int((ring_mass.cumsum(0) >= mass * total).nonzero()[0])
    return EmpiricalRF(
        shape=(height, width),
        extent=(int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1),
        effective=2 * radius + 1,
        nonzero=int(nonzero.sum()),
        clipped=bool(rows[0] == 0 or cols[0] == 0 or rows[-1] == height - 1 or cols[-1] == width - 1),
    )


def gridding_fraction(gradient: torch.Tensor, field: float) -> float:
    """Fraction of the input pixels inside the analytic field (clipped to the input) whose
    gradient is non-zero. A pixel outside the field cannot have one, so counting suffices."""
    height, width = gradient.shape
    return int((gradient != 0).sum()) / (min(field, height) * min(field, width))


def probe_input_size(field: float, global_size: int = 512) -> int:
    """A probe input holding the whole field with a margin: field + 128 rounded up to a multiple
    of 32; `global_size` when the field is the whole input anyway."""
    if math.isinf(field):
        return global_size
    return math.ceil((field + 128) / SIZE_MULTIPLE) * SIZE_MULTIPLE


def measure_receptive_field(
    model: nn.Module,
    size: int | None = None,
    weights: str = "structural",
    global_size: int = 512,
    frames: torch.Tensor | None = None,
) -> ReceptiveField:
    """Analytic table, empirical figures and gridding fraction of `model` in one call; with
    `frames`, the empirical figures are the model's own on those images (`frame_gradient`)."""
    analytic = analytic_receptive_field(model)
    if frames is not None:
        gradient, probed = frame_gradient(model, frames), f"model weights, mean over {len(frames)} frames"
    else:
        gradient = input_gradient(model, size or probe_input_size(analytic.field, global_size), weights)
        probed = f"{weights} weights"
    return ReceptiveField(analytic, empirical_receptive_field(gradient), gridding_fraction(gradient, analytic.field), probed)


def _field(value: float) -> str:
    return "global" if math.isinf(value) else f"{value:g}"


def _stride(value: float) -> str:
    """A stride or cumulative stride; `-` where undefined (around a 1x1 map)."""
    if not math.isfinite(value) or value == 0:
        return "-"
    return f"1/{round(1 / value)}" if value < 1 else f"{value:g}"


def format_layers(layers: Sequence[LayerRF]) -> str:
    """The analytic table as aligned text, one layer per line."""
    header = ("layer", "kind", "kernel", "stride", "dilation", "cum. stride", "RF")
    rows = [header] + [
        (
            layer.name,
            layer.kind,
            "-" if layer.kind == "global pool" else str(layer.kernel),
            _stride(layer.stride),
            str(layer.dilation),
            _stride(layer.jump),
            _field(layer.field),
        )
        for layer in layers
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if column < 2 else cell.rjust(w) for column, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def format_empirical(rf: ReceptiveField) -> str:
    """Two lines: what the gradient shows against the analytic field."""
    empirical, field = rf.empirical, _field(rf.analytic.field)
    clipped = " (reaches the input border)" if empirical.clipped else ""
    return (
        f"analytic receptive field {field} | empirical ({rf.weights}, {empirical.shape[0]}x{empirical.shape[1]} input): "
        f"non-zero extent {empirical.extent[0]}x{empirical.extent[1]}{clipped}, "
        f"95% of the gradient within {empirical.effective}x{empirical.effective}\n"
        f"gridding: {empirical.nonzero} input pixels with non-zero gradient, "
        f"{rf.gridding:.4f} of the analytic field"
    )
