"""The criteria of the ROCOF ride-through and safety trip procedures (docs/hil.md,
"Criteria"); :func:`vpp.hil.criteria.evaluate` adds them to the droop criteria (ride
through) or in their place (trip).

Ride through (``rocof_ride_through``): a grid code's ride-through means that the unit
stays connected and keeps responding through the fast change. So, besides following the
droop:

- ``rocof_applied``: the case really was a fast change: the largest frequency change
  over any ``rocof_window_s`` (0.5 s, a loss-of-mains relay's measuring window) of the
  record, in Hz/s, at least ``min_rocof_hz_s``;
- ``stayed_in_service``: frames from case time 0 with a safety action other than none
  (``max_safety_frames``, 0);
- ``frequency_used``: frames from case time 0 the controller refused or took as invalid,
  i.e. did not respond to (``max_unused_frames``, 0).

Safety trip (``safety_trip``), from the time the trip was injected:

- ``response_before_trip``: the unit was responding when the trip came: the mean measured
  response in the second before it, % of the rating, at least ``min_response_pct``;
- ``setpoint_tripped``: seconds until the setpoint is within ``trip_tolerance_pct`` of the
  rating of 0, at most ``max_trip_setpoint_delay_s``;
- ``power_tripped``: the same for the measured power, at most ``max_trip_power_delay_s``;
- ``stayed_tripped``: the largest setpoint and measured power after each reached 0, % of
  the rating, at most ``trip_tolerance_pct``: nothing resumes while the trip holds.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vpp.hil.runner import ACTIONS, CaseRecord
from vpp.orchestrator.grid.compliance import Criterion

__all__ = ["ride_through_criteria", "trip_criteria"]

FloatArray = NDArray[np.float64]

#: The defaults of the limits these criteria use (a procedure or case overrides them).
DEFAULTS = {
    "min_rocof_hz_s": 1.0,
    "rocof_window_s": 0.5,
    "max_safety_frames": 0.0,
    "max_unused_frames": 0.0,
    "min_response_pct": 10.0,
    "max_trip_setpoint_delay_s": 0.5,
    "max_trip_power_delay_s": 1.0,
    "trip_tolerance_pct": 1.0,
}


def windowed_rocof(t: FloatArray, f: FloatArray, window_s: float) -> float:
    """The largest ``|f(t) - f(t')| / (t - t')`` with ``t'`` the last frame at least
    ``window_s`` before ``t`` (a relay's average ROCOF over its window; a gap in the
    frames lengthens the window rather than shortening it). 0 for a record too short."""
    j = np.searchsorted(t, t - window_s, side="right") - 1
    ok = j >= 0
    if not ok.any():
        return 0.0
    i = np.flatnonzero(ok)
    rates = np.abs(f[i] - f[j[ok]]) / (t[i] - t[j[ok]])
    return float(np.nanmax(rates))


def _count(name: str, n: int, limit: float, what: str, first: float | None) -> Criterion:
    ok = n <= limit
    where = f", the first at {first:.2f} s" if first is not None else ""
    return Criterion(name, ok, float(n), limit, f"{name}: {n} frames {what}{where}")


def ride_through_criteria(rec: CaseRecord, env: dict[str, float]) -> list[Criterion]:
    """``rocof_applied``, ``stayed_in_service`` and ``frequency_used`` of a simulated
    record (a device's record has no safety action nor admission: the caller does not
    judge the last two)."""
    lim = DEFAULTS | env
    t, f = rec.column("t_s"), rec.column("freq_hz")
    rocof = windowed_rocof(t, f, lim["rocof_window_s"])
    need = lim["min_rocof_hz_s"]
    crits = [Criterion(
        "rocof_applied", rocof >= need, rocof, need,
        f"rocof_applied: the frequency changed at up to {rocof:.3f} Hz/s over "
        f"{lim['rocof_window_s']:g} s; at least {need:g} Hz/s makes the case a ride-through",
    )]  # fmt: skip
    after = t >= 0
    action = rec.column("action")
    acted = after & (action > 0)
    worst = ACTIONS[int(np.nanmax(action[after]))] if acted.any() else "none"
    first = float(t[acted][0]) if acted.any() else None
    crits.append(_count("stayed_in_service", int(acted.sum()), lim["max_safety_frames"],
                        f"with a safety action (worst: {worst})", first))  # fmt: skip
    unused = [u for u in rec.unused_s if u >= 0]
    crits.append(_count("frequency_used", len(unused), lim["max_unused_frames"],
                        "refused or taken as invalid by the controller",
                        unused[0] if unused else None))  # fmt: skip
    return crits


def _first_within(t: FloatArray, x: FloatArray, since: float, tol: float) -> float | None:
    hit = np.flatnonzero((t >= since) & (np.abs(x) <= tol))
    return float(t[hit[0]]) if hit.size else None


def _delay(name: str, since: float, at: float | None, limit: float, what: str) -> Criterion:
    if at is None:
        return Criterion(name, False, None, limit, f"{name}: the {what} never reached 0")
    d = at - since
    ok = d <= limit
    return Criterion(name, ok, d, limit,
                     f"{name}: the {what} reached 0 {d:.3f} s after the trip "
                     f"({'within' if ok else 'over'} {limit:g} s)")  # fmt: skip


def trip_criteria(
    rec: CaseRecord, env: dict[str, float], measured: FloatArray, base_kw: float
) -> list[Criterion]:
    """The safety trip's criteria (``measured`` with its holes filled; ``base_kw`` the
    measured power before the frequency event)."""
    lim = DEFAULTS | env
    if rec.trip_at_s is None:
        return [Criterion("trip_injected", False, None, 0.0, "the trip was never injected")]
    tr, rated = rec.trip_at_s, rec.rated_kw
    t, setpoint = rec.column("t_s"), rec.column("setpoint_kw")
    tol_pct = lim["trip_tolerance_pct"]
    tol = tol_pct * rated / 100.0
    before = (t >= tr - 1.0) & (t < tr)
    resp = 100.0 * abs(float(measured[before].mean()) - base_kw) / rated if before.any() else 0.0
    need = lim["min_response_pct"]
    crits = [Criterion(
        "response_before_trip", resp >= need, resp, need,
        f"response_before_trip: {resp:.2f} % of the rating in the second before the trip "
        f"({'at least' if resp >= need else 'under'} {need:g} %: the trip must hit a "
        "responding unit)",
    )]  # fmt: skip
    sp_limit, p_limit = lim["max_trip_setpoint_delay_s"], lim["max_trip_power_delay_s"]
    t_sp = _first_within(t, setpoint, tr, tol)
    t_p = _first_within(t, measured, tr, tol)
    crits.append(_delay("setpoint_tripped", tr, t_sp, sp_limit, "setpoint"))
    crits.append(_delay("power_tripped", tr, t_p, p_limit, "measured power"))
    # Nothing resumes: judged from where each reached 0 (or from its limit, when it did
    # not: then whatever it still does after that counts too).
    sp_from = t_sp if t_sp is not None else tr + sp_limit
    p_from = t_p if t_p is not None else tr + p_limit
    sp_max = float(np.abs(setpoint[t >= sp_from]).max(initial=0.0))
    p_max = float(np.abs(measured[t >= p_from]).max(initial=0.0))
    worst = 100.0 * max(sp_max, p_max) / rated
    ok = worst <= tol_pct
    crits.append(Criterion(
        "stayed_tripped", ok, worst, tol_pct,
        f"stayed_tripped: after the trip, setpoint up to {sp_max:.1f} kW and measured up "
        f"to {p_max:.1f} kW ({worst:.2f} % of the rating, {'within' if ok else 'over'} "
        f"{tol_pct:g} %)",
    ))  # fmt: skip
    return crits
