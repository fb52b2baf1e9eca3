"""One network at several output strides, switched in place.

The parameters of a dilated network do not depend on its output stride; only the strides,
dilations and paddings of its convolutions do (DeepLabv3 trains at 16 and evaluates at 8 with
the same weights). A model's layout at a stride is read off the same model built at that
stride, so a switch gives exactly what the builder gives, ASPP rates included.
"""

from __future__ import annotations

from torch import nn

# Module name -> (stride, dilation, padding) of each convolution.
Layout = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | str]]


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}


def conv_layout(model: nn.Module) -> Layout:
    """The stride, dilation and padding of every convolution of `model`, by module name."""
    return {name: (conv.stride, conv.dilation, conv.padding) for name, conv in _convs(model).items()}


def apply_layout(model: nn.Module, layout: Layout) -> None:
    """Give every convolution of `model` the stride, dilation and padding `layout` has for it;
    parameters (and so an optimizer's state) are untouched."""
    convs = _convs(model)
    if convs.keys() != layout.keys():
        raise ValueError(f"the layout names other convolutions than the model has: {sorted(convs.keys() ^ layout.keys())[:4]}")
    for name, conv in convs.items():
        conv.stride, conv.dilation, conv.padding = layout[name]
