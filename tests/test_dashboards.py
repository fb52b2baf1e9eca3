"""What TensorBoard shows of a run, read back from the event files: the Custom Scalars layout,
lettered panels and confusion matrix, HParams from the start, no single-dot charts."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import CONFIGS, REPO, TINY_TRAIN_OVERRIDES
from segdil.data.checks import evenly_spaced
from segdil.data.synthetic import SyntheticShapes
from segdil.engine.builders import build_model
from segdil.engine.closing import closing_lines, single_class_note
from segdil.engine.tb import METRICS, SHOWN_FIRST, VAL_BY_MINUTE, VAL_MIOU, RunLogger, context_label
from segdil.metrics import ConfusionMatrix
from segdil.models.summary import summarize_model
from segdil.viz import (
    BAND,
    GAP,
    HEADER_HEIGHT,
    colorize,
    confusion_figure,
    figure_image,
    legend_height,
    panel_size,
    prediction_panels,
)

NAMES, PALETTE = SyntheticShapes.class_names, SyntheticShapes.palette
BAND_PIXEL = torch.tensor(BAND, dtype=torch.uint8).view(3, 1, 1)


def ink(picture: torch.Tensor) -> torch.Tensor:
    """Pixels much darker than the band: lettering or outlines."""
    return picture.int().sum(dim=0) < 300


def panels(rows: int = 2, height: int = 32, width: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, len(NAMES), (rows, height, width), generator=generator)
    masks[:, :2, :2] = 255  # ignore
    return torch.rand(rows, 3, height, width, generator=generator), masks, torch.zeros_like(masks)


def test_panels_have_a_header_a_row_per_image_gaps_and_a_legend() -> None:
    images, masks, predictions = panels()
    picture = prediction_panels(images, masks, predictions, PALETTE, NAMES)
    height, width = panel_size(32, 48)
    assert (height, width) == (256, 384)  # small frames are enlarged 8x, whole pixels
    legend = legend_height(NAMES, PALETTE, picture.shape[2])
    assert picture.shape == (3, HEADER_HEIGHT + 2 * height + GAP + legend, 3 * width + 4 * GAP)
    header = picture[:, :HEADER_HEIGHT]
    for column in range(3):  # a title over each column, on the plain band
        left = GAP + column * (width + GAP)
        assert ink(header[:, :, left : left + width]).sum() > 30, column
    assert (header[:, :2] == BAND_PIXEL).all()
    top, left = HEADER_HEIGHT + height + GAP, 2 * GAP + width  # second row, ground truth
    expected = colorize(masks[1], PALETTE).repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
    assert torch.equal(picture[:, top : top + height, left : left + width], expected)
    body = picture[:, HEADER_HEIGHT : HEADER_HEIGHT + 2 * height + GAP]
    assert (body[:, :, width + GAP : width + 2 * GAP] == BAND_PIXEL).all()  # gap between input and truth
    assert (body[:, height : height + GAP, :] == BAND_PIXEL).all()  # gap between the rows
    legend_band = picture[:, -legend:]
    colours = {tuple(pixel) for pixel in legend_band.reshape(3, -1).T.tolist()}
    assert {*PALETTE, (255, 255, 255)} <= colours  # a swatch per class and one for ignore
    assert ink(legend_band).sum() > 100  # their names


def test_large_frames_are_reduced_and_long_legends_wrap() -> None:
    assert panel_size(1024, 2048) == (320, 640)
    assert panel_size(360, 480) == (360, 480)
    many = [f"class_number_{index}" for index in range(30)]
    assert legend_height(many, PALETTE * 6, 800) > 2 * legend_height(NAMES, PALETTE, 800)


def test_panel_examples_are_spread_over_the_val_set() -> None:
    assert evenly_spaced(200, 4).tolist() == [0, 66, 133, 199]
    assert evenly_spaced(3, 4).tolist() == [0, 1, 2]


def test_confusion_figure_names_both_axes_has_a_colour_scale_and_the_diagonal() -> None:
    matrix = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    figure = confusion_figure(matrix, NAMES[:3])
    axes, colour_bar = figure.axes
    assert [label.get_text() for label in axes.get_xticklabels()] == list(NAMES[:3])
    assert [label.get_text() for label in axes.get_yticklabels()] == list(NAMES[:3])
    assert colour_bar.get_ylabel() == "fraction of the true class's pixels"
    texts = [text.get_text() for text in axes.texts]
    assert texts == ["0.80", "0.75", "no pixels of this class"]  # rows normalised per true class
    image = figure_image(figure)
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and min(image.shape[1:]) > 300


@pytest.mark.parametrize(
    ("overrides", "label"),
    [(["model=tiny_fcn"], "off"), (["model=tiny_context"], "basic residual"),
     (["model=dilated_resnet18_feature_context", "model.context.variant=large"], "large plain on features")],
)
def test_the_context_hparam_names_variant_form_and_place(compose, overrides: list[str], label: str) -> None:
    assert context_label(compose("train", overrides).model) == label


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def read(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    return events


def plugin_data(events: EventAccumulator, tag: str) -> HParamsPluginData:
    return HParamsPluginData.FromString(events.PluginTagToContent(hparams.PLUGIN_NAME)[tag])


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict:
    """A run logged by RunLogger: start, one train step (read back then), two validations, finish."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train([*TINY_TRAIN_OVERRIDES, "optim.lr=0.02"])
    summary = summarize_model(build_model(cfg.model, len(NAMES)), (64, 64))
    logger = RunLogger(run_dir, enabled=True)
    logger.start(cfg, NAMES, summary, machine="AMD EPYC (AVX2)", precision="32")
    logger.train_scalars(1, loss=1.5, lr=0.01, images_per_s=12.0, data_wait_fraction=0.05)
    after_one_step = read(run_dir)
    images, masks, predictions = panels(rows=1)
    confusion = ConfusionMatrix(len(NAMES))
    confusion.update(torch.zeros(1, 8, 8, dtype=torch.long), torch.randint(0, 3, (1, 8, 8), generator=torch.Generator().manual_seed(1)))
    picture = prediction_panels(images, masks, predictions, PALETTE, NAMES)
    logger.validation_results(2, confusion, train_seconds=40.0, best_miou=0.1, panels=picture)
    logger.validation_results(4, confusion, train_seconds=150.0, best_miou=0.1, panels=picture)
    logger.finish("best val mIoU 0.1", 4, complete=True)
    return {"after_one_step": after_one_step, "events": read(run_dir), "picture": picture, "confusion": confusion}


def test_custom_scalars_open_on_val_miou_then_loss_lr_and_speed(logged: dict) -> None:
    (point,) = logged["events"].Tensors(custom_scalars.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(point.tensor_proto.string_val[0])
    first, validation, per_class = layout.category
    assert [chart.title for chart in first.chart] == ["val mIoU", "train loss", "learning rate", "train images/s (all processes)"]
    assert list(first.chart[0].multiline.tag) == ["^val/mIoU$"]
    assert "^val_by_minute/mIoU$" in [tag for chart in validation.chart for tag in chart.multiline.tag]
    assert per_class.title == "per-class IoU" and [chart.title for chart in per_class.chart] == [f"IoU {name}" for name in NAMES]


def test_hparams_are_there_after_one_step_with_whole_numbers_as_text(logged: dict) -> None:
    events = logged["after_one_step"]
    start = plugin_data(events, hparams.SESSION_START_INFO_TAG).session_start_info.hparams
    assert start["optim.lr"].number_value == pytest.approx(0.02)
    assert start["data.batch_size"].string_value == "4" and start["trainer.max_iters"].string_value == "4"
    assert start["model.name"].string_value == "tiny_context" and start["model.context"].string_value == "basic residual"
    assert start["model.receptive_field"].string_value.isdigit() and start["model.parameters_M"].number_value > 0
    experiment = plugin_data(events, hparams.EXPERIMENT_TAG).experiment
    assert [info.name.tag for info in experiment.metric_infos] == [tag for tag, _ in METRICS]
    assert {info.name for info in experiment.hparam_infos if info.differs} == set(SHOWN_FIRST)  # ticked at first
    assert hparams.SESSION_END_INFO_TAG not in events.PluginTagToContent(hparams.PLUGIN_NAME)  # still running
    assert plugin_data(logged["events"], hparams.SESSION_END_INFO_TAG).session_end_info.status == api_pb2.STATUS_SUCCESS


def test_scalars_are_the_series_only_and_model_facts_are_text(logged: dict) -> None:
    events = logged["events"]
    present = [name for name, iou in zip(NAMES, logged["confusion"].compute().iou.tolist()) if not math.isnan(iou)]
    assert set(events.Tags()["scalars"]) == {
        "train/loss", "train/lr", "train/images_per_s", "train/data_wait_fraction",
        "val/mIoU", "val/mIoU_best", "val/pixel_acc", "val/mean_acc", VAL_BY_MINUTE, *(f"val_iou/{name}" for name in present),
    }  # no model/ or hparam/ chart of a single dot
    by_minute, by_iteration = events.Scalars(VAL_BY_MINUTE), events.Scalars(VAL_MIOU)
    assert [event.step for event in by_minute] == [1, 2]  # after 40 s and 150 s of training
    assert [event.value for event in by_minute] == [event.value for event in by_iteration]
    texts = set(events.Tags()["tensors"])
    assert {"run/config/text_summary", "run/model/text_summary", "run/summary/text_summary", "val/iou_table/text_summary"} <= texts
    table = events.Tensors("val/iou_table/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| class | IoU | accuracy |") and "| disc |" in table


def test_images_are_the_lettered_panels_and_the_confusion_figure(logged: dict) -> None:
    events = logged["events"]
    assert set(events.Tags()["images"]) == {"val_images/panels", "val_images/confusion_matrix"}
    stored = Image.open(io.BytesIO(events.Images("val_images/panels")[-1].encoded_image_string))
    assert np.array_equal(np.asarray(stored), logged["picture"].permute(1, 2, 0).numpy())
    figure = Image.open(io.BytesIO(events.Images("val_images/confusion_matrix")[-1].encoded_image_string))
    assert min(figure.size) > 300


def test_closing_lines_name_the_best_checkpoint_eval_and_tensorboard(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    history = [{"iteration": 2, "mIoU": 0.3}, {"iteration": 4, "mIoU": 0.5}, {"iteration": 6, "mIoU": 0.5}]
    best, evaluate, compare = closing_lines(run_dir, history)
    assert best == f"best val mIoU 0.5000 (iteration 4): {run_dir}/checkpoints/best.pt"
    assert evaluate == f"evaluate it:  python eval.py checkpoint={run_dir}/checkpoints/best.pt"
    assert compare == f"compare runs: tensorboard --logdir {tmp_path / 'runs'}  (this run: r1; Custom Scalars tab first)"
    assert closing_lines(run_dir, []) == [compare]


def test_a_model_right_on_one_class_only_is_explained() -> None:
    confusion = ConfusionMatrix(3)
    confusion.update(torch.zeros(1, 10, dtype=torch.long), torch.tensor([[0] * 8 + [1, 2]]))
    note = single_class_note(confusion.compute(), ["background", "disc", "square"])
    assert note.startswith("only 'background' is predicted right (80% of the val pixels") and "train longer" in note
    confusion.update(torch.tensor([[1]]), torch.tensor([[1]]))
    assert single_class_note(confusion.compute(), ["background", "disc", "square"]) is None


def test_a_trained_run_is_named_after_its_directory_with_hparams_after_one_step(compose, tmp_path, caplog) -> None:
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    from segdil.engine.trainer import Trainer

    overrides = [*TINY_TRAIN_OVERRIDES, "trainer.val_every=1", "trainer.val_panels=2", "trainer.precision=32"]
    with caplog.at_level("INFO"):
        Trainer(compose("train", overrides), tmp_path / "runs" / "first").fit(until=1)
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs"))
    runs.Reload()
    assert list(runs.Runs()) == ["first"]  # events in the run directory itself, not in first/tb
    events = read(tmp_path / "runs" / "first")
    content = events.PluginTagToContent(hparams.PLUGIN_NAME)
    assert hparams.SESSION_START_INFO_TAG in content and hparams.SESSION_END_INFO_TAG not in content  # stopped early: open
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith(("model/", "hparam/"))]
    assert {VAL_MIOU, VAL_BY_MINUTE} <= set(events.Tags()["scalars"])
    panels = Image.open(io.BytesIO(events.Images("val_images/panels")[-1].encoded_image_string))
    height = panel_size(64, 64)[0]
    assert panels.size[1] == HEADER_HEIGHT + 2 * height + GAP + legend_height(NAMES, PALETTE, panels.size[0])
    lines = [record.getMessage() for record in caplog.records]
    assert sum(line.startswith("model tiny_context: ") for line in lines) == 1  # one model line, no receptive field
    assert not [line for line in lines if "gridding" in line or "pre-flight" in line]
    assert lines[-1] == f"compare runs: tensorboard --logdir {tmp_path / 'runs'}  (this run: first; Custom Scalars tab first)"
    assert lines[-2].startswith("evaluate it:  python eval.py checkpoint=") and lines[-2].endswith("first/checkpoints/best.pt")


def test_the_screenshot_script_says_skip_without_chromium(tmp_path: Path) -> None:
    tools = tmp_path / "bin"  # a PATH with what the script needs before it looks for Chromium, and no Chromium
    tools.mkdir()
    (tools / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run(
        [shutil.which("bash"), str(REPO / "scripts/tb_screenshots.sh"), str(tmp_path / "out")],
        env={"PATH": str(tools)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SKIP tb_screenshots: no Chromium found") and not (tmp_path / "out").exists()
