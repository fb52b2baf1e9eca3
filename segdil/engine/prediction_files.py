"""Files a prediction becomes: class-index PNG, colour PNG, overlay JPEG, benchmark-format PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


class PredictionWriter:
    """Writes, per image stem, `predictions/<stem>.png` (uint8 class indices), `color/<stem>.png`
    (palette colours), `overlay/<stem>.jpg` (half image, half colour) and, with an id table,
    `<format_name>/<stem>_labelIds.png` (class indices mapped through the table)."""

    def __init__(
        self,
        out_dir: Path,
        palette: Sequence[Sequence[int]],
        id_table: Sequence[int] | None = None,
        format_name: str = "cityscapes",
    ) -> None:
        self.dirs = {name: out_dir / name for name in ("predictions", "color", "overlay")}
        if id_table is not None:
            self.dirs[format_name] = out_dir / format_name
        for directory in self.dirs.values():
            directory.mkdir(parents=True, exist_ok=True)
        self.colours = np.zeros((256, 3), dtype=np.uint8)
        self.colours[: len(palette)] = np.asarray(palette, dtype=np.uint8)
        self.id_table = None if id_table is None else np.asarray(id_table, dtype=np.uint8)
        self.format_name = format_name

    def write(self, stem: str, prediction: np.ndarray, image: np.ndarray | None = None) -> None:
        """`prediction`: HxW class indices; `image`: the RGB uint8 input, for the overlay."""
        prediction = prediction.astype(np.uint8)
        Image.fromarray(prediction).save(self.dirs["predictions"] / f"{stem}.png")
        colour = self.colours[prediction]
        Image.fromarray(colour).save(self.dirs["color"] / f"{stem}.png")
        if image is not None:
            if image.shape[:2] != prediction.shape:
                image = np.asarray(Image.fromarray(image).resize(prediction.shape[::-1], Image.BILINEAR))
            overlay = (image.astype(np.uint16) + colour) // 2
            Image.fromarray(overlay.astype(np.uint8)).save(self.dirs["overlay"] / f"{stem}.jpg", quality=90)
        if self.id_table is not None:
            Image.fromarray(self.id_table[prediction]).save(self.dirs[self.format_name] / f"{stem}_labelIds.png")
