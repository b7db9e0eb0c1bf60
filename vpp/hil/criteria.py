"""Pass or fail per criterion, from a case's record (docs/hil.md, "Criteria").

Droop procedures reuse the grid service's compliance check
(:func:`vpp.orchestrator.grid.compliance.check_unit`): the measured power against the
procedure's characteristic over the frequency the unit saw, giving ``start_delay``,
``full_delay``, ``rms_error``, ``max_error`` and ``rel_rms_error`` with the limits of
:class:`~vpp.orchestrator.grid.config.ComplianceConfig`. Every procedure adds:

- ``within_envelope``: no setpoint outside the safety envelope's range of its frame
  (value: the largest excess, kW; limit 0);
- ``within_rating``: the measured power never beyond the rating plus
  ``power_tolerance_pct`` (value and limit in % of the rating).

The ``soc_limit`` procedure replaces the droop criteria with ``setpoint_stopped`` and
``discharge_stopped``: the largest commanded and measured discharge (kW above the
baseline before the event), in % of the rating, within ``max_discharge_pct``.
``rocof_ride_through`` adds to the droop criteria, and ``safety_trip`` replaces them
with, the criteria of :mod:`vpp.hil.safety_criteria`; an ``agc`` procedure has its own
(:mod:`vpp.hil.agc_criteria`).

A device (``target: device``) shows only its measured power (and SOC): the criteria
that need a setpoint or an envelope (``within_envelope``, ``setpoint_stopped``) are
"not judged", with the reason, and so is ``discharge_stopped`` when the device's SOC is
not read (nothing shows that the SOC limit applied). A not-judged criterion is never a
pass: it is listed apart (:attr:`CaseResult.not_judged`), and the case's verdict rests
on the criteria judged. A case that was not run fails on ``not_run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vpp.hil.plan import Case, Procedure
from vpp.hil.runner import CaseRecord
from vpp.hil.safety_criteria import ride_through_criteria, trip_criteria
from vpp.orchestrator.grid.compliance import (
    ComplianceConfig,
    Criterion,
    DroopCharacteristic,
    check_unit,
)
from vpp.orchestrator.grid.events import FrequencyEvent

__all__ = ["CaseResult", "Criterion", "NotJudged", "evaluate", "expected_kw", "limits"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class NotJudged:
    """A criterion of the procedure that this target's record cannot decide."""

    name: str
    reason: str


@dataclass(frozen=True)
class CaseResult:
    """A case's verdict: its criteria and the expected response per frame (kW, from
    the baseline; NaN where the procedure expects none)."""

    case: str
    procedure: str
    criteria: list[Criterion]
    expected_kw: FloatArray
    event_start_s: float
    not_judged: tuple[NotJudged, ...] = ()

    @property
    def passed(self) -> bool:
        """Every criterion judged passed (and at least one was judged)."""
        return bool(self.criteria) and all(c.passed for c in self.criteria)


def limits(proc: Procedure, case: Case) -> tuple[ComplianceConfig, dict[str, float]]:
    """The compliance limits and the envelope limits: the procedure's, the case's on
    top (keys were checked when the plan was loaded)."""
    merged = proc.criteria | case.criteria
    comp = {k: v for k, v in merged.items() if k in ComplianceConfig.model_fields}
    env = {k: v for k, v in merged.items() if k not in comp}
    env.setdefault("power_tolerance_pct", 5.0)
    env.setdefault("max_discharge_pct", 1.0)
    return ComplianceConfig(**comp), env


def _characteristic(proc: Procedure, rec: CaseRecord) -> DroopCharacteristic:
    c = proc.characteristic
    # The procedure's droop at the unit's participation (out of the service: at its
    # rating, so that a unit that does not answer fails rather than passes).
    rated = rec.participation_kw if rec.participation_kw > 0 else rec.rated_kw
    # Without a droop (a knee) the model's droop_percent stays at its default, unused.
    droop = {} if c.droop_percent is None else {"droop_percent": c.droop_percent}
    return DroopCharacteristic(
        rated_kw=rated,
        nominal_hz=c.nominal_hz,
        deadband_low_hz=c.deadband_low_hz,
        deadband_high_hz=c.deadband_high_hz,
        knee_hz=c.knee_hz,
        knee_percent=c.knee_percent,
        full_hz=c.full_hz,
        **droop,
    )


def expected_kw(proc: Procedure, rec: CaseRecord) -> FloatArray:
    """The procedure's expected response (kW from 0) at each recorded frequency (for a
    safety trip: none from the trip on)."""
    out = _characteristic(proc, rec).expected_kw(rec.column("freq_hz"))
    if proc.kind == "safety_trip" and rec.trip_at_s is not None:
        out = np.where(rec.column("t_s") >= rec.trip_at_s, 0.0, out)
    return out


def _event(t: FloatArray, f: FloatArray, proc: Procedure, duration: float) -> FrequencyEvent:
    c = proc.characteristic
    out = np.flatnonzero((f < c.deadband_low_hz) | (f > c.deadband_high_hz))
    start = float(t[out[0]]) if out.size else 0.0
    return FrequencyEvent(
        start=start,
        trigger="low" if out.size and f[out[0]] < c.deadband_low_hz else "high",
        nadir_hz=float(f.min()),
        nadir_time=float(t[int(np.argmin(f))]),
        zenith_hz=float(f.max()),
        zenith_time=float(t[int(np.argmax(f))]),
        end=duration,
        nominal_hz=c.nominal_hz,
        low_hz=c.deadband_low_hz,
        high_hz=c.deadband_high_hz,
    )


def _pct_criterion(name: str, value: float, limit: float, what: str) -> Criterion:
    ok = value <= limit
    verdict = "within" if ok else "over"
    return Criterion(name, ok, value, limit, f"{name}: {what} {value:.2f} % {verdict} {limit:g} %")


def evaluate(proc: Procedure, case: Case, rec: CaseRecord) -> CaseResult:
    """The criteria of ``proc`` on ``rec``."""
    if rec.not_run is not None:
        crit = Criterion("not_run", False, None, 0.0, f"not run: {rec.not_run}")
        return CaseResult(case.name, proc.name, [crit], np.zeros(0), 0.0)
    if proc.kind == "agc":
        # Imported here: vpp.hil.agc_criteria builds on this module.
        from vpp.hil.agc_criteria import evaluate_agc

        return evaluate_agc(proc, case, rec)
    device = rec.target == "device"
    skipped: list[NotJudged] = []
    no_setpoint = "a device reports no setpoint or envelope: only its measured power is seen"
    comp, env = limits(proc, case)
    t = rec.column("t_s")
    f = rec.column("freq_hz")
    measured = rec.column("measured_kw")
    crits: list[Criterion] = []
    if device:
        # A frame without a reading (a failed poll) is a hole in what the harness saw:
        # counted as a criterion of its own, and the holes filled with the reading before
        # them so that the other criteria can still be computed.
        missing = ~np.isfinite(measured)
        share = 100.0 * float(missing.mean()) if missing.size else 100.0
        ok = share == 0.0
        crits.append(Criterion(
            "meter_readings", ok, share, 0.0,
            f"meter_readings: {share:.1f} % of the frames without a meter reading"
            + (f" ({rec.meter_errors} failed polls)" if rec.meter_errors else ""),
        ))  # fmt: skip
        if missing.all():
            return CaseResult(case.name, proc.name, crits, np.zeros_like(t), 0.0)
        idx = np.where(missing, 0, np.arange(measured.size))
        np.maximum.accumulate(idx, out=idx)
        first = int(np.flatnonzero(~missing)[0])
        measured = measured[np.maximum(idx, first)]
    else:
        # Frames before the first inverter poll have no measurement: the last known
        # value (or 0, the simulator's power at start) stands for it.
        measured = np.where(np.isfinite(measured), measured, 0.0)
    setpoint = rec.column("setpoint_kw")
    event = _event(t, f, proc, case.duration_s)
    before = (t < event.start) & (t >= event.start - comp.baseline_s)
    base = float(measured[before].mean()) if before.any() else float(measured[0])
    if proc.kind in ("droop", "rocof_ride_through"):
        result = check_unit(case.name, event, t, f, measured, _characteristic(proc, rec), comp)
        crits += result.criteria
        if proc.kind == "rocof_ride_through":
            ride = ride_through_criteria(rec, env)
            if device:
                why = "a device reports no safety action nor which frames it used"
                skipped += [NotJudged(c.name, why) for c in ride[1:]]
                ride = ride[:1]
            crits += ride
    elif proc.kind == "safety_trip":
        crits += trip_criteria(rec, env, measured, base)
    else:
        after = t >= event.start
        top = env["max_discharge_pct"]
        if device:
            skipped.append(NotJudged("setpoint_stopped", no_setpoint))
        else:
            cmd = max(0.0, float((setpoint[after] - base).max(initial=0.0)))
            crits.append(_pct_criterion("setpoint_stopped", 100.0 * cmd / rec.rated_kw, top,
                                        "largest discharge commanded"))  # fmt: skip
        if device and not np.isfinite(rec.column("soc_pct")).any():
            skipped.append(NotJudged(
                "discharge_stopped",
                "the device's SOC is not read (no soc_point): nothing shows the SOC limit "
                "applied, so a discharge cannot be told right or wrong",
            ))  # fmt: skip
        else:
            meas = max(0.0, float((measured[after] - base).max(initial=0.0)))
            crits.append(_pct_criterion("discharge_stopped", 100.0 * meas / rec.rated_kw, top,
                                        "largest discharge measured"))  # fmt: skip
    if device:
        skipped.append(NotJudged("within_envelope", no_setpoint))
    else:
        excess = np.maximum(setpoint - rec.column("max_kw"), rec.column("min_kw") - setpoint)
        worst = max(0.0, float(np.nanmax(excess))) if excess.size else 0.0
        ok = worst <= 1e-6
        crits.append(Criterion(
            "within_envelope", ok, worst, 0.0,
            f"within_envelope: setpoint {worst:.3f} kW "
            f"{'inside' if ok else 'outside'} the envelope",
        ))  # fmt: skip
    peak = 100.0 * float(np.abs(measured).max()) / rec.rated_kw
    tol = 100.0 + env["power_tolerance_pct"]
    crits.append(_pct_criterion("within_rating", peak, tol, "peak measured power"))
    expected = expected_kw(proc, rec) if proc.kind != "soc_limit" else np.zeros_like(t)
    return CaseResult(case.name, proc.name, crits, expected, event.start, tuple(skipped))
