"""Type stub of the compiled core ``vpp._core`` (checked against it by mypy.stubtest)."""

from typing import TypedDict, final

__version__: str

# ---- errors (core_ext/py/src/errors.rs) ----

class VppError(Exception): ...
class ConfigError(VppError, ValueError):
    field: str
class FrameError(VppError, ValueError):
    kind: str
    field: str
    offset: int
    expected: int | None
    found: int | None
class TruncatedFrameError(FrameError): ...
class FrameSizeError(FrameError): ...
class CrcError(FrameError): ...
class SyncError(FrameError): ...
class FrameCountError(FrameError): ...
class NoConfigError(FrameError): ...
class ConfigMismatchError(FrameError): ...
class FrameValueError(FrameError): ...
class FrameEncodeError(FrameError): ...
class TickerError(VppError, OSError): ...

# ---- c37118 (core_ext/py/src/c37118.rs) ----

# ---- control (core_ext/py/src/control.rs) ----

# ---- ticker (core_ext/py/src/ticker.rs) ----

class _TickerStats(TypedDict):
    count: int
    overruns: int
    skipped: int
    mean: float
    p50: float
    p99: float
    p999: float
    max: float

class _RealtimeStatus(TypedDict):
    requested: bool
    priority: int | None
    sched_fifo: bool
    sched_fifo_error: str | None
    mlockall: bool
    mlockall_error: str | None

@final
class Ticker:
    """Periodic ticker on absolute CLOCK_MONOTONIC deadlines (tick k at start + k * period)."""

    def __new__(
        cls, period_s: float = 0.1, spin_us: int = 100, realtime: bool = False, priority: int = 50
    ) -> Ticker: ...
    def wait(self) -> float:
        """Sleep (GIL released) until the next deadline; return the lateness in seconds."""
    def __iter__(self) -> Ticker: ...
    def __next__(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def overruns(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def max_lateness(self) -> float: ...
    @property
    def period(self) -> float: ...
    @property
    def spin_us(self) -> int: ...
    @property
    def start(self) -> float: ...
    @property
    def next_deadline(self) -> float: ...
    @property
    def realtime_status(self) -> _RealtimeStatus: ...
    def stats(self) -> _TickerStats: ...
    def reset_stats(self) -> None: ...

# ---- pipeline (core_ext/py/src/pipeline.rs) ----
