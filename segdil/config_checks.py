"""Up-front checks of the numbers a user types, so a bad value is one line before any work starts.

Hydra's structured configs (dataclass schemas in its ConfigStore) would type-check at compose
time, but Hydra reports their failures itself, in several lines, before our error handling
runs; and most of our groups are open `_target_` nodes whose keys a schema would have to
freeze. So the keys users override most are checked here, by name, against what they mean.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from segdil.errors import ConfigError

Check = Callable[[Any], bool]


def _whole(minimum: int) -> tuple[Check, str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum), f"a whole number >= {minimum}"


def _positive_number() -> tuple[Check, str]:
    return (lambda v: isinstance(v, Real) and not isinstance(v, bool) and v > 0), "a number > 0"


def _non_negative_number() -> tuple[Check, str]:
    return (lambda v: isinstance(v, Real) and not isinstance(v, bool) and v >= 0), "a number >= 0"


def _pair_of_whole(minimum: int) -> tuple[Check, str]:
    whole, _ = _whole(minimum)
    return (lambda v: _is_list(v) and len(v) == 2 and all(whole(x) for x in v)), f"[height, width], whole numbers >= {minimum}"


def _scale_range() -> tuple[Check, str]:
    positive, _ = _positive_number()
    return (
        lambda v: _is_list(v) and len(v) == 2 and all(positive(x) for x in v) and v[0] <= v[1],
        "[low, high] with 0 < low <= high",
    )


def _positive_list() -> tuple[Check, str]:
    positive, _ = _positive_number()
    return (lambda v: _is_list(v) and len(v) > 0 and all(positive(x) for x in v)), "a non-empty list of numbers > 0"


def _one_of(*choices: int) -> tuple[Check, str]:
    return (lambda v: v in choices and not isinstance(v, bool)), f"one of {list(choices)}"


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, ListConfig))


TRAIN_KEYS: dict[str, tuple[Check, str]] = {
    "seed": _whole(0),
    "data.batch_size": _whole(1),
    "data.val_batch_size": _whole(1),
    "data.num_workers": _whole(0),
    "data.train_limit": _whole(1),
    "trainer.profile_steps": _whole(0),
    "trainer.max_iters": _whole(1),
    "trainer.val_every": _whole(1),
    "trainer.ckpt_every": _whole(1),
    "trainer.log_every": _whole(1),
    "trainer.keep_last": _whole(0),
    "trainer.accumulate": _whole(1),
    "trainer.progress_every": _non_negative_number(),
    "optim.lr": _positive_number(),
    "aug.crop_size": _pair_of_whole(1),
    "aug.scale_range": _scale_range(),
    "aug.val_scale": _positive_number(),
}

EVAL_KEYS: dict[str, tuple[Check, str]] = {
    "batch_size": _whole(1),
    "num_workers": _whole(0),
    "eval.scales": _positive_list(),
    "eval.crop": _pair_of_whole(1),
    "eval.stride": _pair_of_whole(1),
    "eval.pad_to": _pair_of_whole(1),
    "eval.batch_windows": _whole(1),
    "eval.output_stride": _one_of(8, 16, 32),
    "aug.val_scale": _positive_number(),
}


def check_values(cfg: DictConfig, keys: dict[str, tuple[Check, str]]) -> None:
    """Raise ConfigError naming the first key of `keys` whose value is not what it must be;
    keys absent from `cfg` (a config without that group) are not checked."""
    for key, (is_valid, expected) in keys.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not is_valid(value):
            raise ConfigError(f"{key}={value!r}: expected {expected}")
