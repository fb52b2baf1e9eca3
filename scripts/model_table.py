"""Every `model=` choice in one Markdown table: `python scripts/model_table.py [--size 512] [--classes 21] [NAME ...]`.

Parameters, forward GFLOPs at size x size, output stride, analytic receptive field and the
structural probe's figures (see segdil/receptive_field.py). Models are built on the meta device
at full width: nothing is allocated or computed but the one-channel probe.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's segdil, also when another one is installed

import segdil  # noqa: E402,F401  (sets up the environment before albumentations is imported)
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from segdil.engine.builders import build_model  # noqa: E402
from segdil.models.summary import summarize_model  # noqa: E402


def rows(size: int, num_classes: int, names: list[str] | None = None) -> list[str]:
    """The table's lines for `names` (default: every file of configs/model/)."""
    names = names or sorted(path.stem for path in (REPO / "configs" / "model").glob("*.yaml"))
    lines = [
        "| model | parameters | GFLOPs | output stride | RF analytic | RF empirical extent | 95% of gradient | gridding |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("train", [f"model={name}"])
        with torch.device("meta"):
            model = build_model(cfg.model, num_classes, pretrained=False)
        summary = summarize_model(model, (size, size))
        rf = summary.receptive_field
        field = "global" if math.isinf(rf.analytic.field) else f"{rf.analytic.field:g}"
        extent = f"{rf.empirical.extent[0]}" + (" (whole input)" if rf.empirical.clipped else "")
        lines.append(
            f"| {name} | {summary.parameters / 1e6:.2f}M | {summary.gflops:.1f} | {rf.analytic.output_stride} | "
            f"{field} | {extent} | {rf.empirical.effective} | {rf.gridding:.3f} |"
        )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="input side for GFLOPs (and the probe of global fields)")
    parser.add_argument("--classes", type=int, default=21, help="number of classes (21: Pascal VOC)")
    parser.add_argument("names", nargs="*", help="model configs to list (default: all of configs/model/)")
    arguments = parser.parse_args()
    print("\n".join(rows(arguments.size, arguments.classes, arguments.names)))
