"""The Segmentor: context placement, auxiliary head and its loss, the batch-of-1 guard, summary."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_TRAIN_OVERRIDES
from segdil.engine.builders import build_model
from segdil.errors import ConfigError
from segdil.losses import SegmentationLoss, WithAuxiliary
from segdil.models.summary import forward_gflops, log_model_summary

IMAGES = torch.randn(2, 3, 48, 64)


def test_aux_head_outputs_in_training_only(compose) -> None:
    model = build_model(compose("train", ["model=dilated_resnet18_fcn", "model.backbone.width=8", "model.aux_weight=0.4"]).model, 5)
    outputs = model.train()(IMAGES)
    assert set(outputs) == {"out", "aux"}
    assert outputs["out"].shape == outputs["aux"].shape == (2, 5, 48, 64)
    assert model.aux_head.feature == "layer3"
    assert model.eval()(IMAGES).shape == (2, 5, 48, 64)
    without = build_model(compose("train", ["model=dilated_resnet18_fcn", "model.backbone.width=8"]).model, 5)
    assert without.aux_head is None and isinstance(without.train()(IMAGES), torch.Tensor)


def test_loss_weights_the_auxiliary_logits() -> None:
    masks = torch.randint(0, 5, (2, 48, 64))
    masks[0, :4] = 255
    out, aux = torch.randn(2, 5, 48, 64), torch.randn(2, 5, 48, 64)
    loss = WithAuxiliary(SegmentationLoss(), aux_weight=0.4)
    expected = F.cross_entropy(out, masks, ignore_index=255) + 0.4 * F.cross_entropy(aux, masks, ignore_index=255)
    assert loss({"out": out, "aux": aux}, masks) == pytest.approx(expected.item())
    assert loss(out, masks) == pytest.approx(F.cross_entropy(out, masks, ignore_index=255).item())


def test_context_on_features_starts_as_the_identity(compose) -> None:
    """Without projection the module runs at layer4's width on non-negative features: at init
    the model computes exactly what the same backbone and head compute without it."""
    overrides = ["model.backbone.width=8"]
    fcn = build_model(compose("train", ["model=dilated_resnet18_fcn", *overrides]).model, 5).eval()
    featured = build_model(
        compose("train", ["model=dilated_resnet18_context", "model.context_placement=features", *overrides]).model, 5
    ).eval()
    missing = featured.load_state_dict(fcn.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("context.") for key in missing)
    assert featured.context.layers[0].in_channels == 64
    with torch.no_grad():
        assert torch.allclose(featured(IMAGES), fcn(IMAGES), atol=1e-6)


def test_context_projection_width(compose) -> None:
    model = build_model(compose("train", ["model=dilated_resnet18_feature_context", "model.backbone.width=8"]).model, 5)
    assert model.context[0][0].out_channels == 128 and model.context[1].layers[0].in_channels == 128
    assert model.head[0].in_channels == 128


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.context_placement=middle", "model.context_placement='middle'"),
        ("model.context_width=64", "model.context_width=64"),  # with placement scores
        ("model.aux_weight=-1", "model.aux_weight=-1"),
    ],
)
def test_bad_segmentor_values(compose, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(compose("train", ["model=dilated_resnet18_context", "model.backbone.width=8", override]).model, 5)


def test_aspp_refuses_a_training_batch_of_one(compose) -> None:
    model = build_model(compose("train", ["model=deeplabv3_resnet18", "model.backbone.width=8"]).model, 5)
    with pytest.raises(ConfigError, match="data.batch_size >= 2"):
        model.train()(IMAGES[:1])
    assert model.eval()(IMAGES[:1]).shape == (1, 5, 48, 64)


def test_trainer_runs_deeplab_with_aux_head_and_logs_summary(compose, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from segdil.engine.trainer import Trainer

    overrides = [*TINY_TRAIN_OVERRIDES, "model=deeplabv3_resnet18", "model.aux_weight=0.5", "trainer.max_iters=2"]
    summary = Trainer(compose("train", overrides), tmp_path).fit()
    assert summary["iterations"] == 2 and json.loads((tmp_path / "metrics.json").read_text())["final"]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("model/")]  # text and hparams only
    assert "run/model/text_summary" in events.Tags()["tensors"]
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.receptive_field"].string_value == "global"  # ASPP image pooling


def test_flops_and_summary_figures(compose) -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert forward_gflops(conv, (20, 30)) * 1e9 == 2 * 3 * 8 * 9 * 20 * 30  # two FLOPs per multiply-add

    model = build_model(compose("train", ["model=dilated_resnet18_fcn", "model.backbone.width=8"]).model, 5)
    summary = log_model_summary(model, (64, 64))
    assert summary.parameters == sum(p.numel() for p in model.parameters())
    assert summary.headline().startswith("model dilated_resnet18_fcn: ") and summary.headline().endswith("output stride 8")
    figures = summary.hparams()
    assert figures["model.receptive_field"] == "459" and figures["model.gridding_fraction"] == 1.0


# --- model.freeze: a stage of a staged schedule -------------------------------------------------


def test_frozen_parts_stay_unchanged_while_the_rest_trains(compose, tmp_path) -> None:
    from segdil.engine.trainer import Trainer

    overrides = [*TINY_TRAIN_OVERRIDES, "model=tiny_context", "model.freeze=[backbone]", "trainer.max_iters=2"]
    trainer = Trainer(compose("train", overrides), tmp_path)
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    assert trainer.fit()["iterations"] == 2
    after = trainer.model.state_dict()
    backbone = [key for key in before if key.startswith("backbone.")]
    # Weights and BatchNorm statistics (running means, batch counts) of the backbone are untouched.
    assert any("running_mean" in key for key in backbone)
    assert all(torch.equal(before[key], after[key]) for key in backbone)
    assert not torch.equal(before["head.4.weight"], after["head.4.weight"])
    assert not torch.equal(before["head.1.running_mean"], after["head.1.running_mean"])
    assert not torch.equal(before["context.layers.14.weight"], after["context.layers.14.weight"])


def test_frozen_parts_keep_eval_mode_and_get_no_gradient(compose) -> None:
    model = build_model(compose("train", ["model=dilated_resnet18_context", "model.backbone.width=8", "model.freeze=[backbone,head]"]).model, 5)
    model.train()
    assert model.training and model.context.training
    assert not model.backbone.training and not any(m.training for m in model.head.modules())
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["context." + n for n, _ in model.context.named_parameters()]
    model.eval().train()
    assert not model.backbone.training


def test_freezing_an_unknown_part_names_the_valid_ones(compose) -> None:
    cfg = compose("train", ["model=dilated_resnet18_fcn", "model.backbone.width=8", "model.freeze=[context]"])
    with pytest.raises(ConfigError) as error:
        build_model(cfg.model, 5)
    message = str(error.value)
    assert "\n" not in message
    assert message == "model.freeze=['context']: 'context' is not a part of this model; expected names from ['backbone', 'head']"
