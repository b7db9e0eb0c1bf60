"""The one exception hierarchy of vpp (created by the compiled core, re-exported here).

``VppError`` is the base of everything vpp raises. Frame errors are also ``ValueError``
and carry ``kind``, ``field``, ``offset``, ``expected`` and ``found``. The bus errors
(:class:`MessageError`, :class:`CommandError`, :class:`CommandTimeoutError`) and the
deployment errors (:class:`BindError`, :class:`ProcessFailedError`) are defined here in
Python.
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


class MessageError(VppError, ValueError):
    """A bus message that cannot be decoded or is invalid.

    ``kind`` is the counter it is counted under (``frames``, ``json``, ``type``,
    ``version``, ``field``, ``unexpected``), ``field`` the offending field as a dotted
    path ("" when it concerns the whole message), ``where`` the endpoint and/or sender.
    """

    def __init__(self, message: str, *, kind: str, field: str = "", where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.kind = kind
        self.field = field
        self.where = where


class CommandError(VppError, ValueError):
    """A command refused before it changed anything: a parameter of the wrong type, not
    finite, or making no physical sense here (beyond a rating, a schedule block too short,
    a start far from now). ``field`` names the parameter, ``where`` the target."""

    def __init__(self, message: str, *, field: str = "", where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.field = field
        self.where = where


class CommandTimeoutError(VppError, TimeoutError):
    """A command got no acknowledgement within its timeout, retries included."""

    def __init__(self, message: str, *, command: str = "", where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.command = command
        self.where = where


class HistoryError(VppError, LookupError):
    """A question the history cannot answer: no history file, an empty one, an event or
    unit it does not hold, a time that cannot be read. ``path`` is the history file."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class BindError(VppError, OSError):
    """An address could not be bound or listened on (in use, not an address of this host,
    not permitted). ``address`` names it (``host:port`` or a ZeroMQ endpoint)."""

    def __init__(self, message: str, *, address: str = "") -> None:
        super().__init__(message)
        self.address = address


class ScadaError(VppError, ValueError):
    """Input from a SCADA master that cannot be decoded or is refused: a malformed APDU
    or request, an unknown address, a command for a point that is not commandable or a
    value outside its limits. ``kind`` is the counter it is counted under (``apdu``,
    ``asdu``, ``address``, ``type``, ``value``, ``not_allowed``, ``sequence``, ...),
    ``where`` the protocol and the master (``iec104 127.0.0.1:50123``)."""

    def __init__(self, message: str, *, kind: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.kind = kind
        self.where = where


class ProcessFailedError(VppError, RuntimeError):
    """A process of a site failed for good: it crashed more often than its restart
    budget allows. ``process`` names it; ``exit_code`` is its last exit code."""

    def __init__(self, message: str, *, process: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.process = process
        self.exit_code = exit_code


__all__ = [
    "BindError",
    "CommandError",
    "CommandTimeoutError",
    "ConfigError",
    "ConfigMismatchError",
    "CrcError",
    "FrameCountError",
    "FrameEncodeError",
    "FrameError",
    "FrameSizeError",
    "FrameValueError",
    "HistoryError",
    "MessageError",
    "NoConfigError",
    "ProcessFailedError",
    "ScadaError",
    "SyncError",
    "TickerError",
    "TruncatedFrameError",
    "VppError",
]
