"""The frequency characteristic with a knee, as the core's DroopController computes it.

Without a knee (``knee_hz`` 0) the response is the straight droop from the deadband edge.
With one, it is two segments through the service's own points, the same on both sides of
nominal (deviations from ``nominal_hz``, responses in % of ``p_max``): 0 at the deadband
edge, ``knee_percent`` at ``knee_hz``, 100 % at ``full_hz``, linear between, and on along
the outer segment's line beyond ``full_hz`` (the power limits hold it). Under-frequency
discharges (positive), over-frequency charges. GB Dynamic Containment: deadband
49.985-50.015 Hz, knee 5 % at 0.2 Hz, full at 0.5 Hz.

:func:`knee_error` is the core's validation (``DroopConfig::validate_knee``), so that a
setting is refused when the configuration is loaded rather than when the core gets it;
:func:`knee_kw` is its formula on arrays, for the expected response of compliance checks.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["knee_error", "knee_kw"]


def knee_error(
    nominal_hz: float,
    deadband_low_hz: float,
    deadband_high_hz: float,
    knee_hz: float,
    knee_percent: float,
    full_hz: float,
) -> tuple[str, str] | None:
    """``(field, reason)`` when the knee is not one the core takes, else None: no knee
    (all three 0), or a knee beyond both deadband edges, ``knee_percent`` in (0, 100)
    and ``full_hz`` beyond ``knee_hz`` (a continuous, monotonic response)."""
    if not (math.isfinite(knee_hz) and knee_hz >= 0):
        return "knee_hz", f"must be >= 0 and finite (0 = no knee), got {knee_hz}"
    if knee_hz == 0:
        # A knee_percent or full_hz without knee_hz would be silently ignored.
        for name, v in (("knee_percent", knee_percent), ("full_hz", full_hz)):
            if v != 0:
                return name, f"must be 0 without a knee (knee_hz 0), got {v}"
        return None
    below, above = nominal_hz - deadband_low_hz, deadband_high_hz - nominal_hz
    if not (knee_hz > below and knee_hz > above):
        return "knee_hz", (
            f"must be beyond both deadband edges ({below:.6g} and {above:.6g} Hz from "
            f"nominal), got {knee_hz}"
        )
    if not (math.isfinite(knee_percent) and 0 < knee_percent < 100):
        return "knee_percent", f"must be in (0, 100) with a knee, got {knee_percent}"
    if not (math.isfinite(full_hz) and full_hz > knee_hz):
        return "full_hz", f"must be finite and beyond knee_hz ({knee_hz}), got {full_hz}"
    return None


def knee_kw(
    f: ArrayLike,
    p_max_kw: float,
    nominal_hz: float,
    deadband_low_hz: float,
    deadband_high_hz: float,
    knee_hz: float,
    knee_percent: float,
    full_hz: float,
) -> NDArray[np.float64]:
    """Unlimited response (kW, + = discharge) at frequencies ``f`` with a valid knee
    (``knee_hz > 0``): zero in the deadband."""
    fs = np.asarray(f, dtype=np.float64)
    knee = knee_percent / 100.0

    def fraction(x: NDArray[np.float64], edge: float) -> NDArray[np.float64]:
        inner = knee * ((x - edge) / (knee_hz - edge))  # as the core: <= knee at the knee
        outer = knee + (1.0 - knee) * (x - knee_hz) / (full_hz - knee_hz)
        return np.asarray(np.where(x <= knee_hz, inner, outer), dtype=np.float64)

    low = fraction(nominal_hz - fs, nominal_hz - deadband_low_hz)
    high = fraction(fs - nominal_hz, deadband_high_hz - nominal_hz)
    out = np.where(fs < deadband_low_hz, low, np.where(fs > deadband_high_hz, -high, 0.0))
    return np.asarray(p_max_kw * out, dtype=np.float64)
