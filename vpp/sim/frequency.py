"""Grid frequency profiles for simulated PMUs.

Each profile is a function of time (seconds from the start of the run) returning Hz,
evaluated on NumPy arrays. ``event`` is the profile a user of a frequency-response
product expects to see first: a sudden loss of generation, the fall to a nadir
arrested by inertia and primary response, and the recovery to a quasi-steady value.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vpp.errors import ConfigError
from vpp.sim.config import PROFILES
from vpp.validation import config_error

__all__ = ["PROFILES", "FrequencyProfile", "FrequencySource", "load_recording"]

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


def load_recording(path: Path) -> tuple[FloatArray, FloatArray]:
    """A frequency recording: CSV rows ``time_s,freq_hz`` (a header line is allowed),
    times increasing. Times are made relative to the first row. A bad row is a
    ConfigError naming the file and line."""
    times: list[float] = []
    freqs: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                try:
                    t, f = float(row[0]), float(row[1])
                except (ValueError, IndexError):
                    if line == 1 and not times:
                        continue  # a header
                    raise _recording_error(
                        path, line, f"expected time_s,freq_hz, got {row}"
                    ) from None
                if times and t <= times[-1]:
                    raise _recording_error(path, line, f"time {t} does not increase")
                if not 40.0 <= f <= 70.0:
                    raise _recording_error(path, line, f"frequency {f} Hz is not plausible")
                times.append(t)
                freqs.append(f)
    except OSError as exc:
        raise _recording_error(path, 0, f"cannot read ({exc.strerror or exc})") from exc
    if len(times) < 2:
        raise _recording_error(path, 0, "needs at least two rows")
    t0 = times[0]
    return np.array(times) - t0, np.array(freqs)


def _recording_error(path: Path, line: int, reason: str) -> ConfigError:
    where = f"{path}, line {line}" if line else str(path)
    return config_error(f"frequency recording {where}: {reason}", "csv")


@dataclass(frozen=True)
class FrequencyProfile:
    """A named frequency profile around ``nominal`` Hz.

    ``kind`` is one of ``PROFILES``; ``magnitude`` is the size of the disturbance in Hz
    (for ``ramp``: Hz/s), ``start`` when it begins (s), ``period`` the oscillation period
    (s), ``noise`` the standard deviation of white measurement noise (Hz). ``csv`` plays
    the recording at path ``csv`` (see :func:`load_recording`) from ``start``, linearly
    interpolated and repeated when it ends; before ``start`` it holds the first value.
    """

    kind: str = "event"
    nominal: float = 50.0
    magnitude: float = -0.35
    start: float = 2.0
    period: float = 4.0
    noise: float = 0.0005
    seed: int = 1
    csv: Path | None = None
    _recording: tuple[FloatArray, FloatArray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.kind not in PROFILES:
            raise ConfigError(f"unknown frequency profile {self.kind!r}; known: {PROFILES}")
        if (self.kind == "csv") != (self.csv is not None):
            raise ConfigError("a csv path goes with kind 'csv', and only with it")
        if self.csv is not None:
            # Frozen: the recording is loaded once, here.
            object.__setattr__(self, "_recording", load_recording(Path(self.csv)))
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
        elif self.kind == "csv":
            assert self._recording is not None
            times, freqs = self._recording
            dev = np.interp(np.mod(dt, times[-1]), times, freqs) - self.nominal
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
