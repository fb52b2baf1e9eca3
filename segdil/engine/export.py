"""Export a trained model to TorchScript and ONNX, and check each against PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from segdil.engine.builders import restore_model
from segdil.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> torch.nn.Module:
    traced = torch.jit.trace(model, example)
    traced.save(str(path))
    return torch.jit.load(str(path))


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path):
    """ONNX with dynamic batch, height and width; returns an onnxruntime session (needs the
    optional extra `pip install -e .[export]`)."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("export.formats includes onnx: install the extra first (pip install -e '.[export]')") from None
    dims = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        model, (example,), str(path), input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": dims, "logits": dims}, dynamo=False,
    )
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def export_checkpoint(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Write model.pt (TorchScript) and/or model.onnx; return each format's largest absolute
    difference from the PyTorch model on a fresh input of another size than the trace's."""
    unknown = set(cfg.formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"formats={list(cfg.formats)}: expected a subset of {list(FORMATS)}")
    model, _, _ = restore_model(cfg.checkpoint, torch.device("cpu"))
    height, width = cfg.height, cfg.width
    example = torch.randn(1, 3, height, width)
    check = torch.randn(2, 3, height + 32, width - 32)  # other batch and size: dynamic shapes work
    expected = model(check)
    differences = {}
    if "torchscript" in cfg.formats:
        scripted = export_torchscript(model, example, run_dir / "model.pt")
        differences["torchscript"] = float((scripted(check) - expected).abs().max())
    if "onnx" in cfg.formats:
        session = export_onnx(model, example, run_dir / "model.onnx")
        (output,) = session.run(None, {"images": check.numpy()})
        differences["onnx"] = float((torch.from_numpy(output) - expected).abs().max())
    for name, difference in differences.items():
        log.info("%s: written to %s, largest |difference| from PyTorch %.3g", name, run_dir, difference)
    return differences
