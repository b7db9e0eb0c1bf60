"""The criteria of the AGC procedure (docs/hil.md, "AGC"), from a case's record.

What the plant owes is the harness's figure, not the campus's: the set-point in force
(the last one the harness sent) within the procedure's reserve (``reserve_up_mw`` /
``reserve_down_mw``, :meth:`AgcConfig.obligation`), so that a campus given a smaller
reserve, or none, fails rather than passes on its own smaller obligation. The response
is the units' measured power (summed) minus its mean in the second before the first
set-point. The SRAS rules are the product's own: the record goes through
:class:`~vpp.orchestrator.grid.agc_performance.AgcPerformance` with the case's limits,
frame by frame from case time 0, and its signals (a change of the obligation beyond the
tolerance) give:

- ``start_delay``: per signal, seconds from the set-point until the response covered
  ``agc_start_fraction`` of the step; the worst signal's, at most ``agc_start_s``;
- ``full_delay``: per signal, seconds until the response was within the tolerance
  (``agc_tolerance_pct`` of the larger reserve) of the obligation; at most ``agc_full_s``.

A signal that never got there fails once its limit ran out while it was in force; one
replaced by the next (or the case's end) sooner is not judged on it, as in the product.
A case with no signal to judge fails: it proved nothing. Then, beside them:

- ``tracking_rms_error``, ``tracking_max_error``: from each signal's full response to the
  next signal, the response minus the obligation, RMS and largest, % of the larger
  reserve (limits ``agc_max_rms_error_pct``, ``agc_max_error_pct``); not judged when no
  signal became full (``full_delay`` says why);
- ``within_reserve``: the response never beyond the reserve, either way: the largest
  excess, % of the larger reserve, at most the tolerance;
- ``within_envelope`` (no unit's setpoint outside its frame's envelope range; the
  largest excess, kW, limit 0) and ``within_rating`` (the largest unit's peak measured
  power, % of its rating, at most 100 + ``power_tolerance_pct``), as every case.

The service period's checks (energy, time within tolerance, sustained for 30 min) are
not judged: a case paced in real time lasts a minute, not a 15-minute block.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vpp.hil.agc_plan import agc_limits, resolve_agc
from vpp.hil.criteria import CaseResult, NotJudged
from vpp.hil.plan import Case, Procedure
from vpp.hil.runner import CaseRecord
from vpp.orchestrator.grid.agc import AgcConfig
from vpp.orchestrator.grid.agc_performance import AgcPerformance, Signal
from vpp.orchestrator.grid.compliance import Criterion

__all__ = ["evaluate_agc", "performance"]

FloatArray = NDArray[np.float64]
#: Signals listed in a criterion's detail (the rest are counted).
DETAIL_SIGNALS = 6


def _filled(x: FloatArray) -> FloatArray:
    """NaN holes (frames before the first poll) filled with the value before them, the
    leading ones with the first value (0 if there is none)."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    idx = np.where(ok, np.arange(x.size), 0)
    np.maximum.accumulate(idx, out=idx)
    idx = np.maximum(idx, int(np.flatnonzero(ok)[0]))
    return x[idx]


def performance(
    cfg: AgcConfig, t: FloatArray, requested_mw: FloatArray, delivered_mw: FloatArray
) -> AgcPerformance:
    """The product's SRAS performance record of the frames from case time 0."""
    perf = AgcPerformance(cfg)
    for ti, r, d in zip(t.tolist(), requested_mw.tolist(), delivered_mw.tolist(), strict=True):
        if ti >= 0:
            perf.record(ti, r, d)
    return perf


def _signal_text(g: Signal, c: dict[str, Any]) -> str:
    what = f"{g.t:.1f} s ({g.from_mw:+.3f} -> {g.to_mw:+.3f} MW): "
    if c["value"] is not None:
        return what + f"{c['value']:.2f} s"
    return what + ("none within the limit" if not c["passed"] else c["reason"].split(": ")[-1])


def _signal_criterion(
    name: str, k: int, reports: list[tuple[Signal, dict[str, Any]]], limit: float
) -> Criterion:
    """Criterion ``name`` (the ``k``-th of AgcPerformance's signal reports) over every
    signal: fails if one fails or none could be judged; the worst delay reached."""
    if not reports:
        return Criterion(name, False, None, limit,
                         f"{name}: no change of the obligation beyond the tolerance: "
                         "nothing to judge")  # fmt: skip
    crits = [(g, rep["criteria"][k]) for g, rep in reports]
    judged = [c for _, c in crits if c["value"] is not None or not c["passed"]]
    failed = [c for _, c in crits if not c["passed"]]
    values = [c["value"] for c in judged if c["value"] is not None]
    detail = "; ".join(_signal_text(g, c) for g, c in crits[:DETAIL_SIGNALS])
    if len(crits) > DETAIL_SIGNALS:
        detail += f"; {len(crits) - DETAIL_SIGNALS} more"
    if not judged:
        return Criterion(name, False, None, limit,
                         f"{name}: every signal was replaced before it could be judged "
                         f"(hold a set-point longer than {limit:g} s): {detail}")  # fmt: skip
    never = any(c["value"] is None for c in failed)
    value = None if never else max(values)
    ok = not failed
    head = (f"{name}: {len(judged)} signals judged, {len(failed)} over {limit:g} s"
            if failed else f"{name}: worst {max(values):.2f} s of {len(judged)} signals, "
            f"within {limit:g} s")  # fmt: skip
    return Criterion(name, ok, value, limit, f"{head}: {detail}")


def _pct(name: str, value: float, limit: float, what: str) -> Criterion:
    ok = value <= limit
    verdict = "within" if ok else "over"
    return Criterion(name, ok, value, limit, f"{name}: {what} {value:.2f} % {verdict} {limit:g} %")


def evaluate_agc(proc: Procedure, case: Case, rec: CaseRecord) -> CaseResult:
    """The AGC criteria of ``rec`` (see the module docstring)."""
    lim = agc_limits(proc, case)
    agc = resolve_agc(proc, case)
    t = rec.column("t_s")
    measured = _filled(rec.column("measured_kw"))
    sp_kw = rec.column("agc_setpoint_kw")
    sent = np.isfinite(sp_kw)
    first = float(t[sent][0]) if sent.any() else 0.0
    before = (t < first) & (t >= first - 1.0)
    base = float(measured[before].mean()) if before.any() else float(measured[0]) if t.size else 0.0
    cfg = AgcConfig(
        cycle_s=agc.cycle_s,
        reserved_up_mw=agc.reserve_up_mw,
        reserved_down_mw=agc.reserve_down_mw,
        start_s=lim["agc_start_s"],
        full_s=lim["agc_full_s"],
        start_fraction=lim["agc_start_fraction"],
        tolerance_pct=lim["agc_tolerance_pct"],
        max_samples=max(10, t.size + 1),
        max_signals=100_000,
    )
    requested = np.array([cfg.obligation(x / 1000.0) if math.isfinite(x) else 0.0
                          for x in sp_kw.tolist()])  # fmt: skip
    delivered = (measured - base) / 1000.0
    perf = performance(cfg, t, requested, delivered)
    end = float(t[-1]) if t.size else 0.0
    reports = [(g, perf.signal_report(g, end)) for g in perf.signals]
    crits = [
        _signal_criterion("start_delay", 0, reports, cfg.start_s),
        _signal_criterion("full_delay", 1, reports, cfg.full_s),
    ]
    skipped: list[NotJudged] = []
    reserve = max(agc.reserve_up_mw, agc.reserve_down_mw)
    ref = reserve if reserve > 0 else 1e-3  # % of 1 kW when nothing is owed
    settled = np.zeros(t.size, dtype=bool)
    for g in perf.signals:
        if g.full_t is not None:
            stop = g.end_t if g.end_t is not None else math.inf
            settled |= (t >= g.full_t) & (t < stop)
    if settled.any():
        err = 100.0 * (delivered[settled] - requested[settled]) / ref
        rms = float(np.sqrt(np.mean(err**2)))
        crits.append(_pct("tracking_rms_error", rms, lim["agc_max_rms_error_pct"],
                          "RMS error once full, of the reserve,"))  # fmt: skip
        largest = float(np.abs(err).max())
        crits.append(_pct("tracking_max_error", largest, lim["agc_max_error_pct"],
                          "largest error once full, of the reserve,"))  # fmt: skip
    else:
        why = "no signal's response became full (within the tolerance): see full_delay"
        skipped += [NotJudged("tracking_rms_error", why), NotJudged("tracking_max_error", why)]
    after = t >= 0
    beyond = np.maximum(delivered - agc.reserve_up_mw, -agc.reserve_down_mw - delivered)
    worst = max(0.0, float(beyond[after].max(initial=0.0)))
    crits.append(_pct("within_reserve", 100.0 * worst / ref, lim["agc_tolerance_pct"],
                      f"response beyond the reserve (+{agc.reserve_up_mw:g}/"
                      f"-{agc.reserve_down_mw:g} MW) by"))  # fmt: skip
    excess = rec.column("envelope_excess_kw")
    env = max(0.0, float(np.nanmax(excess))) if excess.size else 0.0
    ok = env <= 1e-6
    crits.append(Criterion("within_envelope", ok, env, 0.0,
                           f"within_envelope: a unit's setpoint {env:.3f} kW "
                           f"{'inside' if ok else 'outside'} its envelope"))  # fmt: skip
    peak = rec.column("unit_peak_pct")
    top = float(np.nanmax(peak)) if np.isfinite(peak).any() else 0.0
    crits.append(_pct("within_rating", top, 100.0 + lim["power_tolerance_pct"],
                      "the largest unit's peak measured power"))  # fmt: skip
    expected = base + 1000.0 * requested
    return CaseResult(case.name, proc.name, crits, expected, first, tuple(skipped))
