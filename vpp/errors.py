"""The one exception hierarchy of vpp (created by the compiled core, re-exported here).

``VppError`` is the base of everything vpp raises. Frame errors are also ``ValueError``
and carry ``kind``, ``field``, ``offset``, ``expected`` and ``found``.
"""

from vpp._core import (
    ConfigError,
    ConfigMismatchError,
    CrcError,
    FrameCountError,
    FrameEncodeError,
    FrameError,
    FrameSizeError,
    FrameValueError,
    NoConfigError,
    SyncError,
    TickerError,
    TruncatedFrameError,
    VppError,
)

__all__ = [
    "ConfigError",
    "ConfigMismatchError",
    "CrcError",
    "FrameCountError",
    "FrameEncodeError",
    "FrameError",
    "FrameSizeError",
    "FrameValueError",
    "NoConfigError",
    "SyncError",
    "TickerError",
    "TruncatedFrameError",
    "VppError",
]
