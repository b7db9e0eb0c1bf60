"""The exception hierarchy is one tree, and frame errors are also ValueErrors."""

import pytest

from vpp import errors


def test_every_error_derives_from_vpp_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.VppError), name


@pytest.mark.parametrize(
    "name",
    [
        "TruncatedFrameError",
        "FrameSizeError",
        "CrcError",
        "SyncError",
        "FrameCountError",
        "NoConfigError",
        "ConfigMismatchError",
        "FrameValueError",
        "FrameEncodeError",
    ],
)
def test_frame_errors_are_value_errors(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.FrameError)
    assert issubclass(cls, ValueError)
    assert cls.__module__ == "vpp.errors"


def test_config_error_is_value_error_and_ticker_error_is_os_error() -> None:
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.TickerError, OSError)
    assert not issubclass(errors.ConfigError, errors.FrameError)
