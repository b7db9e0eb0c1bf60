"""Dispatch of a campus power target over the online units of a fleet.

Three strategies (defined precisely in docs/orchestrator-campus.md) share one frame:
the target's sign picks the direction (positive discharge, negative charge); each unit
may take at most its cap in that direction (the safety-envelope limit from its latest
telemetry, capped at its rating) and never the other direction. When the caps add up
to less than the target every unit is at its cap and the result reports the shortfall;
otherwise the setpoints add up to the target exactly (within 1e-6 kW).

- proportional: ``p_i = min(lam * rating_i, cap_i)``, one ``lam`` for all;
- balanced: every unit not at a limit would reach one common SOC ``L`` after
  ``balance_horizon_h`` hours at its setpoint (water-filling on SOC);
- priority: by SOC (highest first when discharging, lowest first when charging), each
  unit to its cap until the target is met.

All three are vectorised: the water level is found from the sorted breakpoints of the
piecewise-linear total with no iteration over units in Python; for a large fleet only the
breakpoints near the answer are sorted (:mod:`vpp.orchestrator.campus.waterfill`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import numpy.typing as npt

from vpp.errors import VppError
from vpp.orchestrator.campus.config import STRATEGIES, DispatchConfig, Strategy
from vpp.orchestrator.campus.fleet import ELIGIBLE, REASONS, Fleet
from vpp.orchestrator.campus.waterfill import fill_in_order, waterfill

__all__ = ["DispatchError", "DispatchResult", "Dispatcher", "allocate"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


class DispatchError(VppError, ValueError):
    """A dispatch request was refused; ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"dispatch: field {field!r}: {message}")
        self.field = field


@dataclasses.dataclass(frozen=True)
class DispatchResult:
    """One dispatch: per-unit setpoints (kW, the target's sign), what they add up to,
    and the units left out with the reason.

    Kept by slot: ``slots`` and ``setpoints_kw`` (same order), ``excluded_slots`` and
    ``excluded_codes`` (indices in :data:`~vpp.orchestrator.campus.fleet.REASONS`). The
    unit ids (:attr:`unit_ids`, :attr:`setpoints`, :attr:`excluded`) are looked up on
    first use only: a campus round works on the slots, and 100,000 ids cost more than
    the whole dispatch."""

    strategy: Strategy
    target_kw: float
    delivered_kw: float
    #: ``target_kw - delivered_kw``: 0 when the fleet could deliver, else what it could not.
    shortfall_kw: float
    slots: IntArray
    setpoints_kw: FloatArray
    excluded_slots: IntArray
    excluded_codes: IntArray
    #: The fleet's ids by slot when dispatched (a copy: later registrations do not move it).
    ids: list[str | None] = dataclasses.field(repr=False, compare=False)

    @functools.cached_property
    def unit_ids(self) -> list[str]:
        """Ids of the units given a setpoint, in the order of :attr:`setpoints_kw`."""
        ids = self.ids
        return [ids[s] or "" for s in self.slots.tolist()]

    @property
    def setpoints(self) -> dict[str, float]:
        """Setpoints by unit id."""
        return dict(zip(self.unit_ids, self.setpoints_kw.tolist(), strict=True))

    @functools.cached_property
    def excluded(self) -> dict[str, str]:
        """Unit id -> reason (offline, no telemetry, safety stop, safety
        emergency_shutdown)."""
        ids = self.ids
        return {ids[s] or "": REASONS[r]
                for s, r in zip(self.excluded_slots.tolist(), self.excluded_codes.tolist(),
                                strict=True)}  # fmt: skip


def _settle(p: FloatArray, cap: FloatArray, target: float) -> FloatArray:
    """Remove the rounding residue of ``sum(p) - target`` by moving it, in proportion,
    onto the units with room in the needed direction. The residue is a few ulp of the
    target; three passes bring it to 1e-9 kW or to the float64 resolution of the
    target, whichever is larger (about 1e-7 kW at 1e9 kW)."""
    for _ in range(3):
        residue = target - float(p.sum())
        if abs(residue) <= 1e-9:
            break
        room = cap - p if residue > 0 else p
        total_room = float(room.sum())
        if total_room <= 0:
            break
        p = np.clip(p + residue * room / total_room, 0.0, cap)
    return p


def allocate(
    strategy: Strategy,
    target_kw: float,
    *,
    cap: FloatArray,
    rating: FloatArray,
    soc: FloatArray,
    energy: FloatArray,
    efficiency: FloatArray,
    horizon_h: float = 0.25,
) -> FloatArray:
    """Magnitudes (>= 0 kW) that add up to ``min(|target_kw|, sum(cap))``.

    All arrays are per unit for the target's direction: ``cap`` the most the unit may
    take, ``rating`` its rated power that way (> 0 where ``cap`` > 0), ``soc`` in %,
    ``energy`` in kWh (> 0), ``efficiency`` one way in (0, 1].
    """
    if strategy not in STRATEGIES:
        raise DispatchError(f"unknown strategy {strategy!r}; known: {STRATEGIES}", field="strategy")
    want = abs(target_kw)
    out = np.zeros(len(cap), dtype=np.float64)
    if want == 0.0 or len(cap) == 0:
        return out
    if want >= float(cap.sum()):
        out[:] = cap
        return out
    use = cap > 0
    # Gathers cost as much as the solve at 100,000 units: skip them when all take part.
    every = bool(use.all())

    def pick(v: FloatArray) -> FloatArray:
        return v if every else v[use]

    c = pick(cap)
    if strategy == "priority":
        s = pick(soc)
        key = -s if target_kw > 0 else s
        p = fill_in_order(key, c, want)  # ties: lower slot first
    elif strategy == "proportional":
        r = pick(rating)
        if not np.all(r > 0):
            raise DispatchError("a unit with a cap > 0 must have a rating > 0", field="rating")
        p = waterfill(np.zeros_like(c), r, c, want)
    else:  # balanced
        e, eta, s = pick(energy), pick(efficiency), pick(soc)
        # kW per % of SOC over the horizon; discharging draws p/eta from the cells,
        # charging stores p*eta.
        k = (eta * e if target_kw > 0 else e / eta) / (100.0 * horizon_h)
        # discharge: p = k (s - L), lam = -L; charge: p = k (L - s), lam = L.
        a = k * s if target_kw > 0 else -k * s
        p = waterfill(a, k, c, want)
    if every:
        return _settle(p, c, want)
    out[use] = _settle(p, c, want)
    return out


class Dispatcher:
    """Dispatches campus targets over a :class:`Fleet` with a :class:`DispatchConfig`."""

    def __init__(self, fleet: Fleet, config: DispatchConfig | None = None) -> None:
        """A dispatcher for ``fleet`` (``config`` defaults to :class:`DispatchConfig`)."""
        self.fleet = fleet
        self.config = config or DispatchConfig()

    def dispatch(
        self, target_kw: float, now: float, strategy: Strategy | None = None
    ) -> DispatchResult:
        """Split ``target_kw`` (+ discharge, - charge) over the units eligible at ``now``."""
        name = strategy or self.config.default_strategy
        if name not in STRATEGIES:
            raise DispatchError(f"unknown strategy {name!r}; known: {STRATEGIES}", field="strategy")
        if not math.isfinite(target_kw):
            raise DispatchError(f"must be finite, got {target_kw!r}", field="target_kw")
        fleet = self.fleet
        reason = fleet.eligibility(now)
        ok = reason == ELIGIBLE
        n = fleet.size
        every = bool(ok.all())
        slots = np.arange(n) if every else np.flatnonzero(ok)

        def pick(v: FloatArray) -> FloatArray:
            # A view when every slot is eligible: gathers cost as much as the solve.
            return v[:n] if every else v[:n][ok]

        discharging = target_kw > 0
        cap = pick(fleet.discharge_limit if discharging else fleet.charge_limit)
        cap = np.minimum(cap, pick(fleet.rated_discharge if discharging else fleet.rated_charge))
        rating = pick(fleet.rated_discharge if discharging else fleet.rated_charge)
        magnitude = allocate(
            name,
            target_kw,
            cap=cap,
            rating=rating,
            soc=pick(fleet.soc),
            energy=pick(fleet.energy),
            efficiency=pick(fleet.efficiency),
            horizon_h=self.config.balance_horizon_h,
        )
        setpoints = magnitude if discharging else -magnitude
        reachable = float(cap.sum())
        # Feasible: the setpoints meet the target and the shortfall is exactly zero. A
        # target equal to the fleet's reach can differ from the summed caps by rounding
        # (the sum's order), which is no shortfall.
        missing = abs(target_kw) - reachable
        if missing <= 1e-9 * max(1.0, reachable):
            missing = 0.0
        left_out = (np.zeros(0, np.intp) if every
                    else np.flatnonzero(~ok & fleet.registered[:n]))  # fmt: skip
        return DispatchResult(
            strategy=name,
            target_kw=target_kw,
            delivered_kw=float(setpoints.sum()),
            shortfall_kw=math.copysign(missing, target_kw) if missing else 0.0,
            slots=slots,
            setpoints_kw=setpoints,
            excluded_slots=left_out,
            excluded_codes=reason[left_out],
            ids=fleet.id_table(),
        )
