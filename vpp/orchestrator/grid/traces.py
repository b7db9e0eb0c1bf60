"""What the grid service remembers of the bus streams: units, their recent power, and the
frequency, bounded in time, to judge an event's compliance once it has ended.

Times: frequency samples carry the PMU time ``t``; telemetry is stamped with the
envelope ``ts`` of the field controller that sent it. Both are UNIX seconds, so the
hosts' clocks are assumed to agree (NTP or PTP) to well under a second.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import numpy.typing as npt

from vpp.orchestrator.bus import schema as s

__all__ = ["FrequencyTrace", "UnitTrack", "interpolate"]

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass
class UnitTrack:
    """One unit: who commands it, its ratings, its latest state and recent power."""

    id: str
    owner: str = ""
    rated_kw: float = 0.0
    last_seen: float = float("-inf")
    """Receipt time (grid clock) of its last heartbeat or telemetry."""
    telemetry: s.Telemetry | None = None
    base_kw: float = 0.0
    """The base setpoint of its latest decision."""
    power: collections.deque[tuple[float, float]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=20_000)
    )
    """(sender time, measured kW)."""
    setpoint: collections.deque[tuple[float, float]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=20_000)
    )
    """(PMU time, decided setpoint kW) from the decision stream."""
    base: collections.deque[tuple[float, float]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=20_000)
    )
    """(PMU time, base kW: schedule, campus target and AGC, before the response)."""

    def window(self, which: str, start: float, end: float) -> tuple[FloatArray, FloatArray]:
        """(times, kW) of ``which`` ("power", "setpoint" or "base") within [start, end]."""
        rows = [r for r in getattr(self, which) if start <= r[0] <= end]
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]


class FrequencyTrace:
    """Recent (t, Hz) samples, oldest first, bounded to ``keep_s`` seconds and to
    ``max_samples`` (a PMU at 50 frames/s fills 90,000 in the default 30 minutes; the
    count bound holds however fast samples come)."""

    def __init__(self, keep_s: float = 1800.0, max_samples: int = 200_000) -> None:
        self.keep_s = keep_s
        self.samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_samples)

    def add(self, t: float, hz: float) -> None:
        """Append one sample and forget those older than ``keep_s``."""
        self.samples.append((t, hz))
        while self.samples and self.samples[0][0] < t - self.keep_s:
            self.samples.popleft()

    def window(self, start: float, end: float) -> tuple[FloatArray, FloatArray]:
        """(times, Hz) within [start, end]."""
        rows = [r for r in self.samples if start <= r[0] <= end]
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]


def interpolate(t: FloatArray, times: FloatArray, values: FloatArray) -> FloatArray:
    """``values`` (at increasing ``times``) linearly interpolated at ``t``, held flat
    beyond the ends."""
    order = np.argsort(times, kind="stable")
    return np.asarray(np.interp(t, times[order], values[order]), dtype=np.float64)
