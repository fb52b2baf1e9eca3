"""Numbers a user types are checked up front: one line naming the key, the value and what is expected."""

from __future__ import annotations

import pytest

from segdil.config_checks import EVAL_KEYS, TRAIN_KEYS, check_values
from segdil.errors import ConfigError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=-2", "data.batch_size=-2: expected a whole number >= 1"),
        ("data.batch_size=0", "data.batch_size=0: expected a whole number >= 1"),
        ("data.val_batch_size=1.5", "data.val_batch_size=1.5: expected a whole number >= 1"),
        ("data.num_workers=-1", "data.num_workers=-1: expected a whole number >= 0"),
        ("trainer.max_iters=abc", "trainer.max_iters='abc': expected a whole number >= 1"),
        ("trainer.val_every=0", "trainer.val_every=0: expected a whole number >= 1"),
        ("trainer.accumulate=true", "trainer.accumulate=True: expected a whole number >= 1"),
        ("optim.lr=-0.1", "optim.lr=-0.1: expected a number > 0"),
        ("optim.lr=fast", "optim.lr='fast': expected a number > 0"),
        ("aug.crop_size=[64]", r"aug.crop_size=\[64\]: expected \[height, width\], whole numbers >= 1"),
        ("aug.crop_size=[64,0]", r"aug.crop_size=\[64, 0\]"),
        ("aug.scale_range=[2.0,0.5]", r"aug.scale_range=\[2.0, 0.5\]: expected \[low, high\] with 0 < low <= high"),
        ("seed=-3", "seed=-3: expected a whole number >= 0"),
    ],
)
def test_bad_training_values_name_the_key_the_value_and_what_is_expected(compose, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        check_values(compose("train", ["dataset=camvid", override]), TRAIN_KEYS)


def test_the_shipped_configs_pass(compose) -> None:
    check_values(compose("train"), TRAIN_KEYS)
    check_values(compose("train", ["experiment=camvid/resnet18_context"]), TRAIN_KEYS)
    check_values(compose("eval", ["checkpoint=x.pt"]), EVAL_KEYS)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=0", "batch_size=0: expected a whole number >= 1"),
        ("eval.scales=[]", r"eval.scales=\[\]: expected a non-empty list of numbers > 0"),
        ("eval.scales=[1.0,-0.5]", r"eval.scales=\[1.0, -0.5\]"),
        ("eval.stride=[0,100]", r"eval.stride=\[0, 100\]"),
        ("eval.output_stride=12", r"eval.output_stride=12: expected one of \[8, 16, 32\]"),
    ],
)
def test_bad_eval_values_are_one_line_errors(compose, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        check_values(compose("eval", ["checkpoint=x.pt", override]), EVAL_KEYS)
