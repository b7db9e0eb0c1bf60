"""Frequency event detection from a stream of (time, frequency, ROCOF) samples.

An event starts at the first sample outside the normal band (``low_hz`` .. ``high_hz``,
IEGC 49.90-50.05 Hz by default) or with abs(ROCOF) above ``rocof_threshold_hz_s``. It
ends once the frequency has stayed inside the band shrunk by ``hysteresis_hz`` on both
sides, with abs(ROCOF) at or below the threshold, for ``hold_s`` seconds: ``recovered``
is the first sample of that stretch, ``end`` the sample that completed the hold. The
event record keeps the nadir and zenith (lowest and highest frequency, with their
times) and the largest ROCOF over every sample from start to end inclusive.

Invalid samples (non-finite or non-positive frequency, non-finite or non-increasing
time) are counted in ``invalid_count`` and skipped; a non-finite ROCOF counts as
unknown, so only the frequency decides for that sample.
"""

from __future__ import annotations

import collections
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from vpp.orchestrator.grid.config import EventDetectionConfig
from vpp.validation import config_error

__all__ = [
    "EventDetectionConfig",
    "EventUpdate",
    "FrequencyEvent",
    "FrequencyEventDetector",
    "detect_events",
]

Trigger = Literal["low", "high", "rocof"]


@dataclass
class FrequencyEvent:
    """One frequency event (times in the stream's seconds, frequencies in Hz).

    ``max_rocof_hz_s`` is the ROCOF of largest magnitude, with its sign. ``recovered``
    and ``end`` are None while the event is still going on.
    """

    start: float
    trigger: Trigger
    nadir_hz: float
    nadir_time: float
    zenith_hz: float
    zenith_time: float
    max_rocof_hz_s: float = 0.0
    max_rocof_time: float | None = None
    samples: int = 0
    recovered: float | None = None
    end: float | None = None
    nominal_hz: float = 50.0
    low_hz: float = 49.90
    """The band the event left (the detector's ``low_hz`` and ``high_hz``)."""
    high_hz: float = 50.05

    @property
    def active(self) -> bool:
        """True until the event has ended."""
        return self.end is None

    @property
    def direction(self) -> Literal["under", "over"]:
        """Under-frequency if the nadir went at least as far from nominal as the zenith.

        While the frequency has not left the band (an event a ROCOF started, the trip
        only beginning to pull the frequency down), the way it is going says: the
        trigger's side, or the sign of the ROCOF."""
        if self.nadir_hz >= self.low_hz and self.zenith_hz <= self.high_hz:
            if self.trigger != "rocof":
                return "under" if self.trigger == "low" else "over"
            return "under" if self.max_rocof_hz_s <= 0 else "over"
        under = self.nominal_hz - self.nadir_hz >= self.zenith_hz - self.nominal_hz
        return "under" if under else "over"

    @property
    def extreme_hz(self) -> float:
        """The nadir of an under-frequency event, the zenith of an over-frequency one."""
        return self.nadir_hz if self.direction == "under" else self.zenith_hz

    @property
    def duration(self) -> float | None:
        """End minus start, s (None while active)."""
        return None if self.end is None else self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values (for messages and logs)."""
        out = asdict(self)
        out["direction"] = self.direction
        return out

    def _add(self, t: float, f: float, rocof: float | None) -> None:
        self.samples += 1
        if f < self.nadir_hz:
            self.nadir_hz, self.nadir_time = f, t
        if f > self.zenith_hz:
            self.zenith_hz, self.zenith_time = f, t
        if rocof is not None and abs(rocof) > abs(self.max_rocof_hz_s):
            self.max_rocof_hz_s, self.max_rocof_time = rocof, t


class EventUpdate(NamedTuple):
    """What a sample did: ``kind`` "start" or "end" of ``event``."""

    kind: Literal["start", "end"]
    event: FrequencyEvent


class FrequencyEventDetector:
    """Feeds samples one at a time; see the module docstring for the rules."""

    def __init__(
        self, config: EventDetectionConfig | None = None, *, keep: int | None = None
    ) -> None:
        """``keep``: how many finished events :attr:`events` holds (None: all, for a
        recorded trace; a long-running service bounds it)."""
        self.config = config if config is not None else EventDetectionConfig()
        self.active: FrequencyEvent | None = None
        #: Finished events, oldest first (the last ``keep``).
        self.events: collections.deque[FrequencyEvent] = collections.deque(maxlen=keep)
        #: Events finished since the start (also those no longer in :attr:`events`).
        self.finished = 0
        self.invalid_count = 0
        self._last_t = -math.inf
        self._recovered_since: float | None = None

    def _trigger(self, f: float, rocof: float | None) -> Trigger | None:
        c = self.config
        if f < c.low_hz:
            return "low"
        if f > c.high_hz:
            return "high"
        thr = c.rocof_threshold_hz_s
        if thr is not None and rocof is not None and abs(rocof) > thr:
            return "rocof"
        return None

    def _recovered(self, f: float, rocof: float | None) -> bool:
        c = self.config
        if not c.low_hz + c.hysteresis_hz <= f <= c.high_hz - c.hysteresis_hz:
            return False
        thr = c.rocof_threshold_hz_s
        return thr is None or rocof is None or abs(rocof) <= thr

    def update(self, t: float, f: float, rocof: float | None = None) -> EventUpdate | None:
        """Take one sample; the start or end of an event it caused, else None."""
        if not (math.isfinite(t) and math.isfinite(f) and f > 0 and t > self._last_t):
            self.invalid_count += 1
            return None
        self._last_t = t
        if rocof is not None and not math.isfinite(rocof):
            rocof = None
        ev = self.active
        if ev is None:
            trigger = self._trigger(f, rocof)
            if trigger is None:
                return None
            cfg = self.config
            ev = FrequencyEvent(t, trigger, f, t, f, t, nominal_hz=cfg.nominal_hz,
                                low_hz=cfg.low_hz, high_hz=cfg.high_hz)  # fmt: skip
            ev._add(t, f, rocof)
            self.active, self._recovered_since = ev, None
            return EventUpdate("start", ev)
        ev._add(t, f, rocof)
        if not self._recovered(f, rocof):
            self._recovered_since = None
            return None
        if self._recovered_since is None:
            self._recovered_since = t
        if t - self._recovered_since < self.config.hold_s:
            return None
        ev.recovered, ev.end = self._recovered_since, t
        self.events.append(ev)
        self.finished += 1
        self.active = None
        return EventUpdate("end", ev)


def detect_events(
    t: ArrayLike,
    f: ArrayLike,
    rocof: ArrayLike | None = None,
    config: EventDetectionConfig | None = None,
) -> list[FrequencyEvent]:
    """The events in a recorded trace, the last one possibly still active (``end`` None)."""
    det = FrequencyEventDetector(config)
    ts = np.asarray(t, dtype=np.float64)
    fs = np.asarray(f, dtype=np.float64)
    rs = None if rocof is None else np.asarray(rocof, dtype=np.float64)
    if fs.shape != ts.shape or (rs is not None and rs.shape != ts.shape):
        raise config_error(f"t, f and rocof differ in length: {ts.shape} {fs.shape}", "f")
    for k in range(ts.size):
        det.update(float(ts[k]), float(fs[k]), None if rs is None else float(rs[k]))
    return [*det.events, *([det.active] if det.active is not None else [])]
