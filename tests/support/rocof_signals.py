"""Test signals and measurements for the ROCOF estimator (tests and benchmarks/rocof_figures.py).

The step, noise and ramp models and the response-time rule are those of the ROCOF section
of docs/control.md; the limits are IEC/IEEE 60255-118-1 at 50 Hz.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from vpp.core import RocofEstimator

FloatArray = NDArray[np.float64]

RATES = (10, 25, 50)  # reporting rates of a 50 Hz system, frames/s
T0 = 1_763_700_000.0  # realistic UNIX seconds: the fit must not lose precision on them
BAND_HZ_S = 0.1  # response-time error band: the M-class steady-state ROCOF limit
RESPONSE_LIMIT_S = 0.120  # P-class ROCOF response time at 50 Hz
STEADY_LIMIT_HZ_S = 0.1  # M-class steady-state ROCOF error
RAMP_LIMIT_HZ_S = 0.2  # M-class ROCOF error on a +-1 Hz/s ramp (P class: 0.4)
NOISE_HZ = 0.001  # realistic PMU frequency noise, rms, before the 1 mHz quantisation

Estimator = Callable[[], RocofEstimator]


def stepped(
    fps: int, df: float, phase: float, seconds: float = 2.0
) -> tuple[FloatArray, FloatArray]:
    """Frame times (s from T0) and FREQ for a step of ``df`` Hz ``phase`` (0..1) of a frame
    interval after the frame at 1 s. Each frame reports the mean frequency over the interval
    ending at it (a PMU deriving frequency from the phase advance between frames), so the
    frame whose interval holds the step carries part of it; phase 0 is the plain sampled step.
    """
    dt = np.arange(int(seconds * fps)) / fps
    ts = 1.0 + phase / fps
    return dt, 50.0 + df * np.clip((dt - ts) * fps, 0.0, 1.0)


def pmu_noise(f: FloatArray, rng: np.random.Generator, sigma: float = NOISE_HZ) -> FloatArray:
    """``f`` as a PMU reports it: white Gaussian noise of ``sigma`` Hz rms, then rounded to
    the 1 mHz of an integer FREQ field (deviation from 50 Hz in mHz)."""
    dev = f - 50.0 + rng.normal(0.0, sigma, f.size)
    return 50.0 + np.round(dev * 1000.0) / 1000.0


def estimates(make: Estimator, dt: FloatArray, f: FloatArray) -> list[float | None]:
    """One estimator fed every frame at T0 + ``dt``; its report for each frame."""
    r = make()
    return [r.update(T0 + float(a), float(b)) for a, b in zip(dt, f, strict=True)]


def response_time(make: Estimator, fps: int, df: float, phase: float) -> float:
    """Seconds from the first to the last reported ROCOF outside the error band, on frame
    timestamps (IEC/IEEE 60255-118-1 step test). Every frame after the first 0.5 s must be
    reported, so a missing report cannot hide an error."""
    dt, f = stepped(fps, df, phase)
    est = estimates(make, dt, f)
    out = []
    for t, v in zip(dt, est, strict=True):
        if t >= 0.5:
            assert v is not None, f"no report at {t} s"
            if abs(v) > BAND_HZ_S:
                out.append(float(t))
    assert out, "the step must leave the band"
    return out[-1] - out[0]


def worst_error(
    make: Estimator,
    fps: int,
    seed: int,
    slope: float = 0.0,
    seconds: float = 60.0,
    sigma: float = NOISE_HZ,
) -> float:
    """Largest abs(ROCOF - slope) over ``seconds`` of noisy frames on a ramp of ``slope``
    Hz/s through 50 Hz at mid-run (0: steady state); at least all but the first second
    of frames must be reported."""
    dt = np.arange(int(seconds * fps)) / fps
    f = pmu_noise(50.0 + slope * (dt - seconds / 2), np.random.default_rng(seed), sigma)
    errors = [abs(v - slope) for v in estimates(make, dt, f) if v is not None]
    assert len(errors) > dt.size - fps
    return max(errors)
