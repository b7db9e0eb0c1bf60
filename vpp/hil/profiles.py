"""A case's frequency profile as a function of the case's time, and as the frequency
source of a simulated PMU (:class:`vpp.sim.pmu.PmuServer` ``source=``).

Time 0 is the case's start; the PMU runs ``settle_s`` seconds before it, at the
profile's first frequency, so that the controller is connected and its ramp anchored
before anything happens. Recordings (CSV, COMTRADE) are interpolated linearly, their
first value held before they start and their last after they end (never looped: a test
wants one event, not a repeating one).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vpp.hil.comtrade import read_channel
from vpp.hil.plan import (
    AgcProfile,
    ComtradeProfile,
    CsvProfile,
    OscillationProfile,
    RampProfile,
    StepProfile,
)
from vpp.sim.frequency import load_recording
from vpp.validation import config_error

__all__ = ["CaseSource", "ProfileFunction"]

FloatArray = NDArray[np.float64]
AnyProfile = (
    StepProfile | RampProfile | OscillationProfile | CsvProfile | ComtradeProfile | AgcProfile
)


class ProfileFunction:
    """Frequency (Hz) at case times; :meth:`start_s` is when the disturbance begins."""

    def __init__(self, profile: AnyProfile, base: Path) -> None:
        self.profile = profile
        self._rec: tuple[FloatArray, FloatArray] | None = None
        if isinstance(profile, CsvProfile):
            self._rec = load_recording(base / profile.file)
        elif isinstance(profile, ComtradeProfile):
            times, freqs = read_channel(base / profile.file, profile.channel)
            if times.size < 2:
                raise config_error(f"COMTRADE {profile.file}: fewer than 2 samples", "file")
            if not np.all((freqs > 40) & (freqs < 70)):
                bad = float(freqs[(freqs <= 40) | (freqs >= 70)][0])
                why = f"channel {profile.channel!r} holds {bad:g}, not a frequency in Hz"
                raise config_error(f"COMTRADE {profile.file}: {why}", "channel")
            self._rec = (times, freqs)

    @property
    def start_s(self) -> float:
        """The case time at which the profile starts to move."""
        return self.profile.at_s

    def at(self, t: FloatArray) -> FloatArray:
        """Frequency in Hz at case times ``t`` (before 0: the first frequency)."""
        p = self.profile
        t = np.asarray(t, dtype=np.float64)
        dt = np.clip(t - p.at_s, 0.0, None)
        if isinstance(p, StepProfile):
            f = np.where(t >= p.at_s, p.to_hz, p.from_hz)
        elif isinstance(p, RampProfile):
            f = p.from_hz + p.rate_hz_s * np.minimum(dt, p.ramp_s)
        elif isinstance(p, OscillationProfile):
            f = p.center_hz + p.amplitude_hz * np.sin(2 * np.pi * dt / p.period_s)
        elif isinstance(p, AgcProfile):
            f = np.full_like(t, p.hz)  # set-points go to the campus; the PMU holds hz
        else:
            assert self._rec is not None
            times, freqs = self._rec
            f = np.interp(dt + times[0], times, freqs)
        return np.asarray(f, dtype=np.float64)

    def value(self, t: float) -> float:
        """Frequency in Hz at one case time."""
        return float(self.at(np.array([t]))[0])


class CaseSource:
    """The PMU's frequency source: the profile at ``t - settle_s`` (PMU time ``t``), with
    its ROCOF as the backward difference over one frame."""

    def __init__(self, fn: ProfileFunction, settle_s: float, rate: int, nominal: float = 50.0):
        self.fn, self.settle_s, self.dt = fn, settle_s, 1.0 / rate
        self._nominal = nominal

    @property
    def nominal(self) -> float:
        """Nominal frequency, Hz."""
        return self._nominal

    def sample(self, t: float) -> tuple[float, float]:
        """(frequency Hz, ROCOF Hz/s) at PMU time ``t``."""
        # Rounded to the nanosecond: a step at a frame's time must fall on that frame,
        # whatever the binary fractions of k / rate - settle_s make of it.
        tc = round(t - self.settle_s, 9)
        f = self.fn.value(tc)
        rocof = (f - self.fn.value(round(tc - self.dt, 9))) / self.dt
        return f, rocof if math.isfinite(rocof) else 0.0
