"""The Yu & Koltun context module: identity initialisation, widths, parameter counts."""

import pytest
import torch

from segdil.models.context import PAPER_DILATIONS, ContextModule, large_width_multipliers


def test_basic_is_exactly_identity_at_init() -> None:
    module = ContextModule(channels=11, variant="basic")
    scores = torch.rand(2, 11, 23, 37) * 10  # non-negative: the ReLUs pass them unchanged
    assert torch.equal(module(scores), scores)


def test_basic_clips_negative_scores_at_init() -> None:
    """The ReLUs of the paper's module truncate negative class scores: documented behaviour."""
    module = ContextModule(channels=3)
    scores = torch.randn(1, 3, 9, 9)
    assert torch.equal(module(scores), scores.clamp(min=0))


def test_large_is_close_to_identity_at_init() -> None:
    torch.manual_seed(0)
    module = ContextModule(channels=5, variant="large")
    scores = torch.rand(2, 5, 32, 32)
    assert torch.allclose(module(scores), scores, atol=0.05)
    noiseless = ContextModule(channels=5, variant="large", noise_std=0.0)
    assert torch.allclose(noiseless(scores), scores, atol=1e-5)


def test_large_widths_follow_the_paper() -> None:
    assert large_width_multipliers(7) == [2, 2, 4, 8, 16, 32, 32]
    module = ContextModule(channels=4, variant="large")
    widths = [layer.out_channels for layer in module.layers if isinstance(layer, torch.nn.Conv2d)]
    assert widths == [8, 8, 16, 32, 64, 128, 128, 4]


@pytest.mark.parametrize("num_classes", [5, 19])
def test_parameter_counts(num_classes: int) -> None:
    c = num_classes
    basic = ContextModule(channels=c)
    expected_basic = len(PAPER_DILATIONS) * (9 * c * c + c) + (c * c + c)
    assert sum(p.numel() for p in basic.parameters()) == expected_basic

    large = ContextModule(channels=c, variant="large")
    widths = [c] + [c * m for m in (2, 2, 4, 8, 16, 32, 32)]
    expected_large = sum(9 * a * b + b for a, b in zip(widths, widths[1:])) + widths[-1] * c + c
    assert sum(p.numel() for p in large.parameters()) == expected_large


def test_dilations_are_configurable_and_keep_size() -> None:
    module = ContextModule(channels=3, dilations=[1, 1, 2, 4, 8, 16, 32, 64, 1])
    dilations = [layer.dilation[0] for layer in module.layers if isinstance(layer, torch.nn.Conv2d)]
    assert dilations == [1, 1, 2, 4, 8, 16, 32, 64, 1, 1]
    assert module(torch.rand(1, 3, 17, 29)).shape == (1, 3, 17, 29)


def test_residual_is_exactly_identity_at_init_for_any_sign() -> None:
    module = ContextModule(channels=4, residual=True)
    scores = torch.randn(2, 4, 19, 23)
    assert torch.equal(module(scores), scores)
    # Negative scores keep a gradient through the shortcut (the plain module's ReLUs block it).
    scores.requires_grad_(True)
    module(scores).sum().backward()
    assert torch.all(scores.grad == 1)


def test_basic_is_exactly_identity_on_features() -> None:
    """On backbone features (non-negative after the backbone's ReLU) at feature width."""
    module = ContextModule(channels=32)
    features = torch.relu(torch.randn(1, 32, 15, 15))
    assert torch.equal(module(features), features)


def test_bad_variant_and_dilations() -> None:
    with pytest.raises(Exception, match="model.context.variant='huge'"):
        ContextModule(channels=3, variant="huge")
    with pytest.raises(Exception, match="model.context.dilations"):
        ContextModule(channels=3, dilations=[1, 0, 2])
