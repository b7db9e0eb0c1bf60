"""The frequency characteristic with a knee, as the core's DroopController computes it.

Without a knee (``knee_hz`` 0) the response is the straight droop from the deadband edge.
With one, it is two segments through the service's own points, the same on both sides of
nominal (deviations from ``nominal_hz``, responses in % of ``p_max``): 0 at the deadband
edge, ``knee_percent`` at ``knee_hz``, 100 % at ``full_hz``, linear between, and on along
the outer segment's line beyond ``full_hz`` (the power limits hold it). Under-frequency
discharges (positive), over-frequency charges. GB Dynamic Containment: deadband
49.985-50.015 Hz, knee 5 % at 0.2 Hz, full at 0.5 Hz.

:func:`knee_error` is the core's validation (``DroopConfig::validate_knee``), so that a
setting is refused when the configuration is loaded rather than when the core gets it
(it lives with the configuration's models in :mod:`vpp.config.field`, which must not
import numpy; re-exported here); :func:`knee_kw` is its formula on arrays, for the
expected response of compliance checks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vpp.config.field import knee_error

__all__ = ["knee_error", "knee_kw"]


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
