"""An LP schedule moved onto the exchange's volume grid (0.1 MW) without breaking a
battery constraint: :func:`round_schedule`.

Volumes are counted in grid steps ``k`` (positive = discharge): a block may carry ``k = 0``
or ``kmin <= |k|`` (the minimum volume), up to ``kc`` steps of charge and ``kd`` of
discharge (the most whole steps within the power limits less the reserve). One step of
charge for one block stores ``a = step * 0.25 h * eta_charge`` MWh.

Why a rounding always exists, and how it is found
-------------------------------------------------
Call an SOC ``s`` at a boundary with ``r`` blocks to go *completable* when ``s`` lies in
the SOC range ``[lo, hi]`` and ``r`` blocks of charging alone, on the grid, can lift it to
the final SOC ``F`` without passing ``hi``: some total ``K`` of charge steps with
``F <= s + K a <= hi`` is a sum of ``r`` block volumes, each 0 or in ``kmin..kc``, i.e.
``j kmin <= K <= j kc`` for some ``j <= r`` (:func:`_completable`, O(1)). Without a final
SOC, every ``s`` in range is completable (``K = 0``).

The walk goes block by block and takes, among a few grid volumes (the ones around the LP
value, zero, and the *safe move* below), the one whose SOC is closest to the LP's
trajectory *among those leaving a completable SOC*. From a completable SOC a choice
always exists: if the fewest charging blocks ``j`` a completion needs is below ``r``,
idling (``k = 0``) keeps the same completion; otherwise this block must charge, and
charging ``max(kmin, K - (r - 1) kc)`` steps leaves ``K`` minus that, which lies in
``(r - 1) kmin .. (r - 1) kc``: completable again (:func:`_safe_move`). Charging only
raises the SOC and ends at most at ``hi``, so the range holds on the way; at the end
(``r = 0``) completable means ``s >= F``. Hence: **when the initial SOC is completable,
the rounding meets every constraint.** Every volume taken is on the grid and within the
power limits by construction.

When the LP is feasible, the initial SOC ``s0`` is completable if ``s0`` lies in
``[lo, hi]`` and either there is no final SOC, ``F <= s0``, or both
``F - s0 <= n kc a`` (charging the grid's largest volume all day reaches ``F``: always so
when the charge limit is a multiple of the step, since the LP had to do it within the
limit) and ``hi - F >= kmin a`` (one block at the minimum volume does not carry ``F`` past
``hi``). Proof: with ``x = (F - s0) / a``, ``j = ceil(x / kc) <= n`` and
``K = max(ceil(x), j kmin)`` satisfies ``j kmin <= K <= j kc`` and
``K < x + kmin <= (hi - s0) / a``.

Where the grid itself is the obstacle
-------------------------------------
Outside those conditions a feasible LP can have no schedule on the grid at all, and no
rounding can exist: with ``F = hi`` the grid must land exactly on ``hi``
(``s0 + K a - J b = hi``), which whole steps almost never do; a charge limit of 0.15 MW
lets the LP charge 0.15 MW where the grid gives 0.1; an initial SOC below ``lo`` (the
reserve's energy) must be lifted into range in the first block, which the grid may
overshoot or undershoot. Failing the whole day (no bid) is the least useful answer, so
the rounding relaxes only what the grid forces, and says so in ``Schedule.relaxed``
(the messages of :func:`check_schedule`) and in a warning:

- an SOC that starts outside ``[lo, hi]`` is moved toward the range as far as the grid
  allows (the volume landing nearest the range) until a volume lands inside;
- a final SOC the walk cannot reach is lowered to the highest one it reaches (bisection
  on ``F``; without a final SOC the walk never fails). With ``s0`` in range and the charge
  limit on the grid, the final SOC then falls short by less than ``kmin a`` (0.024 MWh at
  0.1 MW and eta 0.95): the walk succeeds for ``F - kmin a`` by the condition above.

Power limits and the range once inside are never relaxed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vpp.orchestrator.market.bids import BidLimits, snap
from vpp.orchestrator.market.errors import ScheduleError
from vpp.orchestrator.market.products import BLOCK_H
from vpp.orchestrator.market.schedule import (
    Schedule,
    check_schedule,
    drawn_mwh,
    revenue,
    soc_trajectory,
)

if TYPE_CHECKING:
    from vpp.orchestrator.market.optimiser import BatteryParams

__all__ = ["round_schedule"]

log = logging.getLogger(__name__)

# MWh slack of the walk's own checks: a quarter of check_schedule's 1e-6, so that the
# re-check (the same float operations in the same order) passes with room to spare.
_TOL = 2.5e-7
# Float noise when counting whole steps in a power limit (0.3 / 0.1 = 2.9999999999999996).
_STEPS_EPS = 1e-9


@dataclass(frozen=True)
class _Grid:
    """The volume grid in steps, and the SOC range the walk must keep."""

    battery: BatteryParams
    step: float
    kmin: int  # steps of the minimum volume
    kc: int  # most charge steps within the charge limit (0: not even the minimum fits)
    kd: int  # most discharge steps within the discharge limit
    a: float  # MWh stored by one step of charge for one block
    lo: float
    hi: float

    @classmethod
    def of(cls, battery: BatteryParams, lim: BidLimits) -> _Grid:
        step = lim.volume_step_mw
        kmin = max(1, math.ceil(lim.min_volume_mw / step - _STEPS_EPS))
        kc = math.floor(battery.charge_limit_mw / step + _STEPS_EPS)
        kd = math.floor(battery.discharge_limit_mw / step + _STEPS_EPS)
        lo, hi = battery.soc_bounds()
        a = step * BLOCK_H * battery.eta_charge
        return cls(battery, step, kmin, kc if kc >= kmin else 0, kd if kd >= kmin else 0,
                   a, lo, hi)  # fmt: skip

    def allowed(self, k: int) -> bool:
        """Whether ``k`` steps are a volume the exchange takes within the power limits."""
        return k == 0 or (self.kmin <= abs(k) and -self.kc <= k <= self.kd)

    def every(self) -> list[int]:
        """Every allowed volume, in steps."""
        return [k for k in range(-self.kc, self.kd + 1) if self.allowed(k)]

    def mw(self, k: int) -> float:
        return snap(k * self.step, self.step)

    def after(self, s: float, k: int) -> float:
        """The SOC after a block of ``k`` steps from ``s`` (as soc_trajectory computes it)."""
        return s - drawn_mwh(self.mw(k), self.battery)

    def steps_to(self, s: float, soc: float) -> float:
        """The (fractional) steps that carry the SOC from ``s`` to ``soc`` in one block."""
        drawn = s - soc
        b = self.battery
        mw = drawn * b.eta_discharge / BLOCK_H if drawn > 0 else drawn / (BLOCK_H * b.eta_charge)
        return mw / self.step

    def gap(self, s: float) -> float:
        """How far ``s`` lies outside the SOC range (0 inside)."""
        return max(self.lo - s, s - self.hi, 0.0)

    def charge_needed(self, s: float, final: float) -> tuple[int, int]:
        """Fewest and most charge steps that lift ``s`` to ``final`` without passing hi."""
        return math.ceil((final - _TOL - s) / self.a), math.floor((self.hi + _TOL - s) / self.a)


def _completable(g: _Grid, s: float, r: int, final: float | None) -> bool:
    """Whether ``s`` is in range and ``r`` blocks of grid charging reach ``final`` (above)."""
    if g.gap(s) > _TOL:
        return False
    if final is None or s >= final - _TOL:
        return True
    k_lo, k_hi = g.charge_needed(s, final)
    if g.kc == 0 or k_lo > k_hi:
        return False
    j = _fewest_blocks(g, k_lo)  # more blocks only need more steps
    return j <= r and j * g.kmin <= k_hi


def _fewest_blocks(g: _Grid, steps: int) -> int:
    """The fewest blocks of charging at the most (``kc`` steps) that make ``steps``."""
    return -(-steps // g.kc)


def _safe_move(g: _Grid, s: float, r: int, final: float | None) -> int:
    """From a completable ``s`` with ``r`` blocks to go, a volume that leaves one (above)."""
    if final is None or s >= final - _TOL or g.kc == 0:
        return 0
    k_lo, _ = g.charge_needed(s, final)
    if _fewest_blocks(g, k_lo) < r:
        return 0
    total = max(k_lo, r * g.kmin)
    return -max(g.kmin, total - (r - 1) * g.kc)


def _walk(lp: Schedule, g: _Grid, final: float | None) -> list[int] | None:
    """Steps per block following ``lp`` (above), or None when the start is not completable."""
    s = g.battery.soc_initial_mwh
    n = len(lp.net_mw)
    out: list[int] = []
    for t, p in enumerate(lp.net_mw):
        r = n - t - 1
        target = lp.soc_mwh[t + 1]
        in_range = g.gap(s) <= _TOL
        if in_range:
            # The volumes around the LP's, around the one back onto the LP's SOC and around
            # those to either end of the range (where the nearest that fit lie when the
            # LP's do not); zero and the safe move make sure one fits.
            near = {0, g.kmin, -g.kmin, _safe_move(g, s, r + 1, final)}
            for x in (p / g.step, g.steps_to(s, target), g.steps_to(s, g.lo), g.steps_to(s, g.hi)):
                base = math.floor(x + _STEPS_EPS)
                near.update((base - 1, base, base + 1, base + 2))
            soc = {k: g.after(s, k) for k in near if g.allowed(k)}
        else:
            soc = {k: g.after(s, k) for k in g.every()}
        ok = [k for k, x in soc.items() if _completable(g, x, r, final)]
        if not ok and in_range:
            # Only when ``s`` is not completable (the start), or by float noise at a
            # boundary, which a full scan then covers.
            soc = {k: g.after(s, k) for k in g.every()}
            ok = [k for k, x in soc.items() if _completable(g, x, r, final)]
        elif not ok and not any(g.gap(x) <= _TOL for x in soc.values()):
            # The grid cannot bring the SOC into range in this block: come nearest.
            least = min(g.gap(x) for x in soc.values())
            ok = [k for k, x in soc.items() if g.gap(x) <= least + _TOL]
        if not ok:
            return None
        k = min(ok, key=lambda k: (abs(soc[k] - target), abs(g.mw(k) - p), k))
        out.append(k)
        s = soc[k]
    return out


def round_schedule(
    schedule: Schedule, battery: BatteryParams, limits: BidLimits | None = None
) -> Schedule:
    """``schedule`` on the exchange's volume grid, every constraint re-checked.

    Block by block, the grid volume whose SOC stays closest to the unrounded trajectory
    (so rounding errors do not pile up) among those from which the rest of the day can
    still meet every constraint; see the module docstring for why one always exists and
    what is relaxed (listed in ``relaxed``, and logged) when the grid itself rules the
    LP's constraints out. Never raises for a schedule of ``battery``.
    """
    g = _Grid.of(battery, limits or BidLimits())
    final = battery.soc_final_mwh
    steps = _walk(schedule, g, final)
    if steps is None and final is not None:
        # Bisect for the highest final SOC the walk reaches. At lo it is the walk without
        # a final SOC (every SOC in range is completable), which always succeeds.
        low, high = g.lo, final
        steps = _walk(schedule, g, None)
        while high - low > _TOL:
            mid = 0.5 * (low + high)
            trial = _walk(schedule, g, mid)
            if trial is None:
                high = mid
            else:
                low, steps = mid, trial
    if steps is None:
        raise ScheduleError("no rounding found: a bug, see vpp.orchestrator.market.rounding",
                            field="net_mw")  # fmt: skip
    net = tuple(g.mw(k) for k in steps)
    relaxed = tuple(check_schedule(net, battery))
    if relaxed:
        log.warning("the %g MW volume grid cannot meet every constraint of the LP: %s",
                    g.step, "; ".join(relaxed))  # fmt: skip
    gain = revenue(net, schedule.prices_rs_mwh, battery.degradation_rs_mwh)
    return replace(schedule, net_mw=net, soc_mwh=soc_trajectory(net, battery), revenue_rs=gain,
                   relaxed=relaxed)  # fmt: skip
