"""Errors that mean "the user's input is wrong": entry points print them as one line, no traceback."""

from hydra.errors import InstantiationException


class SegdilError(Exception):
    """Base class for problems the user can fix (bad config value, missing or invalid file)."""


class ConfigError(SegdilError):
    """A config key holds a value segdil cannot use."""


class DataError(SegdilError):
    """A data set on disk is missing, incomplete or holds invalid labels."""


class CheckpointError(SegdilError):
    """A checkpoint path is missing or the file is not a segdil checkpoint."""


class TrainingError(SegdilError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


def user_error(error: BaseException) -> SegdilError | None:
    """The SegdilError behind `error`: itself, or the one Hydra's `instantiate` wrapped, possibly
    several times over (a dataset, transform or model constructor that rejects its arguments);
    None for a real bug."""
    while isinstance(error, InstantiationException):
        error = error.__cause__
    return error if isinstance(error, SegdilError) else None
