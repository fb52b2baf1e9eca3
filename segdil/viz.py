"""Pictures for people: class masks in colour, images back from normalisation, the validation
panels (input | ground truth | prediction, with a header and a colour legend) and the
confusion-matrix figure.

Two drawing tools, each where it is best: the panels are composed pixel by pixel with torch and
lettered with PIL, so the images are shown exactly (no figure resampling) at a cost of a few
milliseconds per validation; the confusion matrix needs axes, tick labels and a colour bar,
which is matplotlib's job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from segdil.data.base import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

COLUMNS = ("input", "ground truth", "prediction")
IGNORE_NAME = "ignore"  # the legend's name for IGNORE_INDEX pixels, drawn white
# Header, legend and gaps share one light grey: distinct from the black of a background class
# and from the white of ignore pixels, so neighbouring masks never run together.
BAND = (236, 236, 236)
INK = (20, 20, 20)
GAP = 6  # pixels between columns and between rows
FONT_SIZE = 16
HEADER_HEIGHT = 28
LEGEND_LINE = 24  # height of one legend line; a legend wraps to as many lines as it needs
SWATCH = 14
# A panel is shown at least this tall (whole-number nearest-neighbour enlargement, so each label
# pixel stays a crisp square: the 128-pixel synthetic images become 256) and at most this wide
# (larger frames are reduced, so a row of three Cityscapes frames stays a screen wide).
MIN_PANEL_HEIGHT = 256
MAX_PANEL_WIDTH = 640


def colorize(mask: torch.Tensor, palette: Sequence[Sequence[int]]) -> torch.Tensor:
    """HxW class indices -> 3xHxW uint8 colours; ignore pixels are white."""
    table = torch.zeros(256, 3, dtype=torch.uint8)
    table[: len(palette)] = torch.tensor(palette, dtype=torch.uint8)
    table[IGNORE_INDEX] = 255
    return table[mask.long().clamp(0, 255).cpu()].permute(2, 0, 1)


def denormalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """3xHxW normalised float -> 3xHxW uint8, undoing albumentations' Normalize defaults."""
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    return ((image.float().cpu() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)


def font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled font at `size` pixels (no font file needed on the machine)."""
    return ImageFont.load_default(size=size)


def panel_size(height: int, width: int) -> tuple[int, int]:
    """The size a height x width frame is shown at in the panels (see MIN_PANEL_HEIGHT)."""
    if height < MIN_PANEL_HEIGHT:
        factor = math.ceil(MIN_PANEL_HEIGHT / height)
        return height * factor, width * factor
    if width > MAX_PANEL_WIDTH:
        return max(1, round(height * MAX_PANEL_WIDTH / width)), MAX_PANEL_WIDTH
    return height, width


def resized(tile: torch.Tensor, size: tuple[int, int], smooth: bool) -> torch.Tensor:
    """A 3xHxW uint8 tile at `size`: nearest neighbour for masks and enlargements, area
    averaging when a photograph is reduced."""
    if tuple(tile.shape[-2:]) == size:
        return tile
    mode = "area" if smooth and size[0] < tile.shape[-2] else "nearest-exact"
    return F.interpolate(tile[None].float(), size=size, mode=mode)[0].round().clamp(0, 255).to(torch.uint8)


def legend_entries(class_names: Sequence[str], palette: Sequence[Sequence[int]]) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of every class, then ignore (white)."""
    entries = [(name, tuple(int(c) for c in palette[index])) for index, name in enumerate(class_names)]
    return [*entries, (IGNORE_NAME, (255, 255, 255))]


def legend_layout(entries: Sequence[tuple[str, tuple[int, int, int]]], width: int) -> list[tuple[int, int]]:
    """The (x, line) of each legend entry, wrapped to `width` pixels."""
    lettering = font()
    positions, x, line = [], GAP, 0
    for name, _ in entries:
        entry_width = SWATCH + 6 + math.ceil(lettering.getlength(name)) + 16
        if x > GAP and x + entry_width > width:
            x, line = GAP, line + 1
        positions.append((x, line))
        x += entry_width
    return positions


def legend_height(class_names: Sequence[str], palette: Sequence[Sequence[int]], width: int) -> int:
    """Height in pixels of the legend band of a `width`-pixel picture."""
    lines = 1 + max(line for _, line in legend_layout(legend_entries(class_names, palette), width))
    return lines * LEGEND_LINE + GAP


def prediction_panels(
    images: torch.Tensor,
    masks: torch.Tensor,
    predictions: torch.Tensor,
    palette: Sequence[Sequence[int]],
    class_names: Sequence[str],
) -> torch.Tensor:
    """One 3xHxW uint8 picture: a header naming the columns (input | ground truth | prediction),
    a row per image with grey gaps between the panels, and a legend naming each class colour."""
    height, width = panel_size(*images.shape[-2:])
    rows = [
        [
            resized(denormalize(image), (height, width), smooth=True),
            resized(colorize(mask, palette), (height, width), smooth=False),
            resized(colorize(prediction, palette), (height, width), smooth=False),
        ]
        for image, mask, prediction in zip(images, masks, predictions)
    ]
    total_width = len(COLUMNS) * width + (len(COLUMNS) + 1) * GAP
    body_height = len(rows) * height + (len(rows) - 1) * GAP
    entries = legend_entries(class_names, palette)
    legend_top = HEADER_HEIGHT + body_height
    canvas = torch.tensor(BAND, dtype=torch.uint8).view(3, 1, 1).repeat(
        1, legend_top + legend_height(class_names, palette, total_width), total_width
    )
    for row, tiles in enumerate(rows):
        top = HEADER_HEIGHT + row * (height + GAP)
        for column, tile in enumerate(tiles):
            left = GAP + column * (width + GAP)
            canvas[:, top : top + height, left : left + width] = tile
    picture = Image.fromarray(canvas.permute(1, 2, 0).numpy())
    draw, lettering = ImageDraw.Draw(picture), font()
    for column, title in enumerate(COLUMNS):
        centre = GAP + column * (width + GAP) + width / 2
        draw.text((centre, HEADER_HEIGHT / 2), title, fill=INK, font=lettering, anchor="mm")
    for (name, colour), (x, line) in zip(entries, legend_layout(entries, total_width)):
        middle = legend_top + GAP + line * LEGEND_LINE + LEGEND_LINE / 2
        draw.rectangle(
            (x, middle - SWATCH / 2, x + SWATCH - 1, middle + SWATCH / 2 - 1), fill=colour, outline=INK
        )
        draw.text((x + SWATCH + 6, middle), name, fill=INK, font=lettering, anchor="lm")
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """The confusion matrix normalised per true class (each row sums to 1; a class without
    ground-truth pixels is a grey row), class names on both axes, the diagonal written in."""
    counts = matrix.double().cpu()
    totals = counts.sum(dim=1, keepdim=True)
    normalised = torch.where(totals > 0, counts / totals.clamp(min=1), torch.nan).numpy()
    classes = len(class_names)
    side = 2.0 + 0.42 * classes  # inches: room for the names and the cells
    figure = Figure(figsize=(side + 1.6, side + 0.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    shown = axes.imshow(
        np.ma.masked_invalid(normalised), cmap=colormaps["viridis"].with_extremes(bad="lightgrey"), vmin=0.0, vmax=1.0
    )
    axes.set_xticks(range(classes), class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(classes), class_names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    axes.set_title("val confusion matrix (rows sum to 1)")
    for index in range(classes):
        value = normalised[index, index]
        if np.isnan(value):
            axes.text((classes - 1) / 2, index, "no pixels of this class", ha="center", va="center", fontsize=8)
        else:
            colour = "black" if value > 0.6 else "white"  # viridis is light at the top of its scale
            axes.text(index, index, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(shown, ax=axes, label="fraction of the true class's pixels")
    return figure


def figure_image(figure: Figure) -> torch.Tensor:
    """A matplotlib figure rendered as a 3xHxW uint8 tensor (Agg, without pyplot's global state)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1)
