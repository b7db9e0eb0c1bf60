"""Grid frequency profiles for simulated PMUs.

Each profile is a function of time (seconds from the start of the run) returning Hz,
evaluated on NumPy arrays. ``event`` is the profile a user of a frequency-response
product expects to see first: a sudden loss of generation, the fall to a nadir
arrested by inertia and primary response, and the recovery to a quasi-steady value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vpp.errors import ConfigError

FloatArray = NDArray[np.float64]

class FrequencySource(Protocol):
    """A stateful frequency source for a simulated PMU (e.g. a grid model): ``sample`` is
    called with increasing times (s from the start) and returns (Hz, ROCOF Hz/s)."""

    @property
    def nominal(self) -> float:
        """Nominal frequency, Hz."""
        ...

    def sample(self, t: float) -> tuple[float, float]:
        """(frequency Hz, ROCOF Hz/s) at ``t`` s from the start."""
        ...


PROFILES = ("constant", "ramp", "step", "oscillation", "event")


@dataclass(frozen=True)
class FrequencyProfile:
    """A named frequency profile around ``nominal`` Hz.

    ``kind`` is one of ``PROFILES``; ``magnitude`` is the size of the disturbance in Hz
    (for ``ramp``: Hz/s), ``start`` when it begins (s), ``period`` the oscillation period
    (s), ``noise`` the standard deviation of white measurement noise (Hz).
    """

    kind: str = "event"
    nominal: float = 50.0
    magnitude: float = -0.35
    start: float = 2.0
    period: float = 4.0
    noise: float = 0.0005
    seed: int = 1

    def __post_init__(self) -> None:
        if self.kind not in PROFILES:
            raise ConfigError(f"unknown frequency profile {self.kind!r}; known: {PROFILES}")
        if self.nominal not in (50.0, 60.0):
            raise ConfigError(f"nominal frequency must be 50 or 60 Hz, got {self.nominal}")
        if self.noise < 0 or self.period <= 0:
            raise ConfigError("noise must be >= 0 and period > 0")

    def at(self, t: FloatArray) -> FloatArray:
        """Frequency in Hz at the times ``t`` (seconds from the start), noise included."""
        t = np.asarray(t, dtype=np.float64)
        dt = np.clip(t - self.start, 0.0, None)
        active = t >= self.start
        if self.kind == "constant":
            dev = np.full_like(t, self.magnitude if self.magnitude > 0 else 0.0)
        elif self.kind == "ramp":
            dev = self.magnitude * dt
        elif self.kind == "step":
            dev = np.where(active, self.magnitude, 0.0)
        elif self.kind == "oscillation":
            dev = np.where(active, abs(self.magnitude) * np.sin(2 * np.pi * dt / self.period), 0.0)
        else:
            # Second-order response of a single-area grid to a generation loss: an
            # underdamped fall to a nadir about 1.6x the settling deviation, then
            # recovery. Natural period ~8 s and damping 0.35 give a nadir after ~3-4 s,
            # typical of a large interconnection.
            zeta, wn = 0.35, 2 * np.pi / 8.0
            wd = wn * np.sqrt(1 - zeta**2)
            settle = self.magnitude / 1.6
            shape = 1 - np.exp(-zeta * wn * dt) * (
                np.cos(wd * dt) + zeta / np.sqrt(1 - zeta**2) * np.sin(wd * dt)
            )
            dev = np.where(active, settle * shape, 0.0)
        f = self.nominal + dev
        if self.noise:
            rng = np.random.default_rng(self.seed)
            f = f + rng.normal(0.0, self.noise, size=f.shape)
        return np.asarray(f, dtype=np.float64)
