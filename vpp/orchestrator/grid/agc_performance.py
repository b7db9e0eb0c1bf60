"""The AGC / secondary reserve (SRAS) performance of the plant, per signal and per period.

Fed once per step with the obligation (``requested_mw``: the set-point within the
reserve, 0 when stale) and the response measured (``delivered_mw``: the fleet's power
minus its schedule), it checks against :class:`~vpp.orchestrator.grid.agc.AgcConfig`:

- **per signal**: a signal starts when the request moves by more than the tolerance
  (``tolerance_pct`` of the larger reserve) from the previous signal's. Its response has
  *started* once the delivered offset covers ``start_fraction`` of the step from where
  it stood (limit ``start_s``, SRAS 30 s), and is *full* once within tolerance of the
  request (limit ``full_s``, SRAS 15 min). A signal replaced by the next before a limit
  ran out, or still young, is not judged on it (value None, passed).
- **per service period** (samples held until the next one, over ``[start, end)``):
  ``energy``: delivered energy in the requested direction over requested energy, at
  least ``min_energy_pct``; ``within_tolerance``: the share of time within tolerance, at
  least ``min_within_pct``; ``sustained``: in each activation (a run of requests beyond
  the tolerance, one direction), from the first time within tolerance, the response held
  ``min(sustain_s, what was left of the activation)``. Time while a new signal is still
  ramping within its ``full_s`` does not break it; the worst activation is reported.

The reports are dicts like the grid's compliance reports: ``passed``, ``failures``,
``metrics`` and ``criteria`` (name, passed, value, limit, reason). Pure: no I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from vpp.orchestrator.grid.agc import AgcConfig
from vpp.orchestrator.grid.compliance import Criterion

__all__ = ["AgcPerformance", "Sample", "Signal"]


class Sample(NamedTuple):
    """One step: the obligation, the response, and whether a signal was ramping."""

    t: float
    requested_mw: float
    delivered_mw: float
    ramping: bool


@dataclass
class Signal:
    """One change of the request and when the response started and became full."""

    t: float
    from_mw: float
    """The delivered offset when it came."""
    to_mw: float
    start_t: float | None = None
    full_t: float | None = None
    end_t: float | None = None
    """When the next signal replaced it."""


def _report(criteria: list[Criterion], metrics: dict[str, Any]) -> dict[str, Any]:
    return {"passed": all(c.passed for c in criteria),
            "failures": [c.reason for c in criteria if not c.passed],
            "metrics": metrics,
            "criteria": [dataclasses.asdict(c) for c in criteria]}  # fmt: skip


def _at_least(name: str, pct: float | None, limit: float, what: str, na: str) -> Criterion:
    if pct is None:
        return Criterion(name, True, None, limit, f"{name}: n/a ({na})")
    ok = pct >= limit
    return Criterion(name, ok, pct, limit,
                     f"{pct:.1f} {what}, {'at least' if ok else 'below'} {limit:g}")  # fmt: skip


class AgcPerformance:
    """Performance checks of the AGC response (see the module docstring)."""

    def __init__(self, config: AgcConfig) -> None:
        self.config = config
        self.samples: deque[Sample] = deque(maxlen=config.max_samples)
        self.signals: deque[Signal] = deque(maxlen=config.max_signals)

    @property
    def current(self) -> Signal | None:
        """The signal in force (None before the first)."""
        return self.signals[-1] if self.signals else None

    def record(self, t: float, requested_mw: float, delivered_mw: float) -> None:
        """One step's obligation and measured response (times increasing; others are
        dropped, as a sample from the past would rewrite what was judged)."""
        if self.samples and t <= self.samples[-1].t:
            return
        if not (math.isfinite(requested_mw) and math.isfinite(delivered_mw)):
            return
        tol = self.config.tolerance_mw
        cur = self.current
        if abs(requested_mw - (cur.to_mw if cur else 0.0)) > tol:
            if cur is not None:
                cur.end_t = t
            cur = Signal(t, delivered_mw, requested_mw)
            self.signals.append(cur)
        ramping = False
        if cur is not None:
            step = cur.to_mw - cur.from_mw
            moved = math.copysign(1.0, step) * (delivered_mw - cur.from_mw)
            if cur.start_t is None and moved >= self.config.start_fraction * abs(step):
                cur.start_t = t
            if cur.full_t is None and abs(delivered_mw - cur.to_mw) <= tol:
                cur.full_t = t
                cur.start_t = t if cur.start_t is None else cur.start_t
            ramping = cur.full_t is None and t - cur.t <= self.config.full_s
        self.samples.append(Sample(t, requested_mw, delivered_mw, ramping))

    # ---- per signal ----

    def _delay(self, sig: Signal, name: str, reached: float | None, limit: float,
               now: float) -> Criterion:  # fmt: skip
        if reached is not None:
            d = reached - sig.t
            ok = d <= limit
            why = f"{name} {d:.1f} s {'within' if ok else 'over'} {limit:g} s"
            return Criterion(name, ok, d, limit, why)
        # Not reached: judged only once the limit ran out while the signal was in force.
        until = sig.end_t if sig.end_t is not None else now
        if until - sig.t > limit:
            return Criterion(name, False, None, limit, f"{name}: none within {limit:g} s")
        why = "superseded" if sig.end_t is not None else "pending"
        return Criterion(name, True, None, limit, f"{name}: n/a ({why})")

    def signal_report(self, sig: Signal, now: float) -> dict[str, Any]:
        """The start and full-response criteria of ``sig`` as of ``now``."""
        cfg = self.config
        crits = [self._delay(sig, "start_delay", sig.start_t, cfg.start_s, now),
                 self._delay(sig, "full_delay", sig.full_t, cfg.full_s, now)]  # fmt: skip
        out = _report(crits, {"from_mw": sig.from_mw, "to_mw": sig.to_mw})
        out["t"] = sig.t
        return out

    # ---- per period ----

    def _window(self, start: float, end: float) -> list[tuple[Sample, float]]:
        """The samples in force in ``[start, end)`` with how long each held there."""
        times = [s.t for s in self.samples]
        # The sample before ``start`` holds into the window.
        i = max(0, bisect.bisect_right(times, start) - 1)
        out = []
        for j in range(i, len(self.samples)):
            s = self.samples[j]
            if s.t >= end:
                break
            nxt = times[j + 1] if j + 1 < len(times) else end
            dur = min(nxt, end) - max(s.t, start)
            if dur > 0:
                out.append((s, dur))
        return out

    def period_report(self, start: float, end: float) -> dict[str, Any]:
        """The service period ``[start, end)``: energy, time within tolerance, sustained
        response, and the signals that came in it."""
        cfg = self.config
        tol = cfg.tolerance_mw
        win = self._window(start, end)
        duration = sum(d for _, d in win)
        req = sum(abs(s.requested_mw) * d for s, d in win) / 3600.0
        got = sum(math.copysign(1.0, s.requested_mw) * s.delivered_mw * d
                  for s, d in win if s.requested_mw != 0) / 3600.0  # fmt: skip
        within = sum(d for s, d in win if abs(s.delivered_mw - s.requested_mw) <= tol)
        metrics: dict[str, Any] = {"duration_s": duration, "requested_mwh": req,
                                   "delivered_mwh": got, "tolerance_mw": tol}  # fmt: skip
        crits = [
            _at_least("energy", 100.0 * got / req if req > 0 else None, cfg.min_energy_pct,
                      "% of the requested energy", "nothing requested"),
            _at_least("within_tolerance", 100.0 * within / duration if duration > 0 else None,
                      cfg.min_within_pct, "% of the time within tolerance", "no time"),
        ]  # fmt: skip
        crits.append(self._sustained(win, tol, metrics))
        sigs = [self.signal_report(g, end) for g in self.signals if start <= g.t < end]
        out = _report(crits, metrics)
        out.update(start=start, end=end, signals=sigs)
        return out

    def _sustained(self, win: list[tuple[Sample, float]], tol: float,
                   metrics: dict[str, Any]) -> Criterion:  # fmt: skip
        cfg = self.config
        worst: tuple[float, float] | None = None  # (held, required) of the worst activation
        acts: list[list[tuple[Sample, float]]] = []
        for s, d in win:
            side = 0 if abs(s.requested_mw) <= tol else (1 if s.requested_mw > 0 else -1)
            prev = acts[-1][-1][0] if acts and acts[-1] else None
            if side == 0:
                if acts and acts[-1]:
                    acts.append([])
                continue
            if prev is None or (prev.requested_mw > 0) != (side > 0):
                acts.append([])
            acts[-1].append((s, d))
        for act in (a for a in acts if a):
            first = next((k for k, (s, _) in enumerate(act)
                          if abs(s.delivered_mw - s.requested_mw) <= tol), None)  # fmt: skip
            if first is None:
                continue  # never full: the signal's full_delay says so
            left = sum(d for _, d in act[first:])
            required = min(cfg.sustain_s, left)
            held = best = 0.0
            for s, d in act[first:]:
                ok = abs(s.delivered_mw - s.requested_mw) <= tol or s.ramping
                held = held + d if ok else 0.0
                best = max(best, held)
            if worst is None or best - required < worst[0] - worst[1]:
                worst = (best, required)
        if worst is None:
            return Criterion("sustained", True, None, cfg.sustain_s,
                             "sustained: n/a (no activation reached tolerance)")  # fmt: skip
        held, required = worst
        metrics["sustained_s"] = held
        ok = held >= required - 1e-9
        return Criterion("sustained", ok, held, required,
                         f"sustained {held:.0f} s, {'at least' if ok else 'short of'} "
                         f"{required:.0f} s")  # fmt: skip
