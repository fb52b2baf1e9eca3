"""What a model costs and sees: parameters, forward GFLOPs, output stride, receptive field."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from segdil.receptive_field import ReceptiveField, eval_mode, format_empirical, measure_receptive_field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    parameters: int
    gflops: float  # forward, one image of `input_size`, 2 FLOPs per multiply-add
    input_size: tuple[int, int]
    receptive_field: ReceptiveField

    def __str__(self) -> str:
        return f"{self.headline()}\n{format_empirical(self.receptive_field)}"

    def headline(self) -> str:
        """One line: parameters, GFLOPs at the input size, output stride."""
        height, width = self.input_size
        return (
            f"model {self.name}: {self.parameters / 1e6:.3g}M parameters | {self.gflops:.3g} GFLOPs forward at "
            f"{height}x{width} | output stride {self.receptive_field.analytic.output_stride}"
        )

    def markdown(self) -> str:
        """The whole summary for TensorBoard's text dashboard (markdown line breaks)."""
        return str(self).replace("\n", "  \n")

    def hparams(self) -> dict[str, float | str]:
        """The model's figures as hparams: whole numbers as text (TensorBoard's HParams tab would
        print them with five significant digits), a global receptive field as `global`."""
        rf = self.receptive_field
        field = "global" if math.isinf(rf.analytic.field) else str(int(rf.analytic.field))
        return {
            "model.parameters_M": round(self.parameters / 1e6, 4),
            "model.gflops": round(self.gflops, 4),
            "model.receptive_field": field,
            "model.effective_receptive_field": str(rf.empirical.effective),
            "model.gridding_fraction": round(float(rf.gridding), 4),
        }


def forward_gflops(model: nn.Module, input_size: Sequence[int]) -> float:
    """Forward GFLOPs of one image, counted by FlopCounterMode in eval mode on the meta device:
    the model's tensors are swapped for meta ones, so nothing is computed or allocated."""
    meta = {name: torch.empty_like(t, device="meta") for name, t in chain(model.named_parameters(), model.named_buffers())}
    images = torch.empty(1, 3, *input_size, device="meta")
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        functional_call(model, meta, (images,))
    return counter.get_total_flops() / 1e9


def summarize_model(model: nn.Module, input_size: Sequence[int]) -> ModelSummary:
    """Parameters (all, the auxiliary head's included), GFLOPs at `input_size`, output stride
    and the structural receptive field (the probe input is `input_size` when it is global)."""
    size = (int(input_size[0]), int(input_size[1]))
    return ModelSummary(
        name=getattr(model, "name", type(model).__name__),
        parameters=sum(p.numel() for p in model.parameters()),
        gflops=forward_gflops(model, size),
        input_size=size,
        receptive_field=measure_receptive_field(model, global_size=max(size)),
    )


def log_model_summary(model: nn.Module, input_size: Sequence[int]) -> ModelSummary:
    """Summarise and log the whole summary at debug level: a run's start shows `headline()` in
    one line, TensorBoard the rest (text and hparams)."""
    summary = summarize_model(model, input_size)
    log.debug("%s", summary)
    return summary
