"""Which blocks to buy and sell in: a linear programme for one battery (or an aggregate).

Per block ``t`` (length ``dt`` = 0.25 h) the variables are charge ``c_t`` and discharge
``d_t`` (MW, grid side, both >= 0) and the state of charge ``s_t`` at the block's end
(MWh). The programme maximises revenue at the forecast prices minus degradation::

    max  sum_t  dt * (price_t * (d_t - c_t) - deg * (c_t + d_t))
    s.t. s_t = s_{t-1} + dt * (eta_c * c_t - d_t / eta_d)           (s_0 given)
         0 <= c_t <= P_charge - r - R_dn,  0 <= d_t <= P_discharge - r - R_up
         lo <= s_t <= hi                                            (see below)
         s_n >= soc_final                                           (when given)

Two reserves are held. ``r`` MW (``reserve_mw``) both ways for frequency response,
sustained for ``h`` hours; and the secondary reserve (SRAS) obligation accepted, ``R_up``
MW up and ``R_dn`` MW down (``reserve_up_mw``, ``reserve_down_mw``), sustained for ``H``
hours (``reserve_sustain_h``), whose energy must lie inside the band the AGC handler
keeps (``reserve_floor_mwh`` .. ``reserve_ceiling_mwh``, default the SOC range). Both may
be called at once, so their power and energy add::

    lo = max(soc_min, floor)   + (r * h + R_up * H) / eta_d
    hi = min(soc_max, ceiling) - (r * h + R_dn * H) * eta_c

It is solved by HiGHS through :func:`scipy.optimize.linprog` with sparse constraint
matrices. :func:`greedy_schedule` is a simple price-threshold heuristic: the reference the
programme must beat, in the tests and in ``benchmarks/bench_market.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

from vpp.orchestrator.market.errors import ScheduleError
from vpp.orchestrator.market.products import BLOCK_H
from vpp.orchestrator.market.schedule import Schedule, revenue, soc_trajectory

__all__ = ["BatteryParams", "greedy_schedule", "optimise"]

# A vanishing throughput cost so that charging and discharging in the same block (a
# tie when prices are zero) is never chosen: the schedule is then one net MW per block.
_EPS_RS_MWH = 1e-6


class BatteryParams(BaseModel):
    """One battery (or an aggregate) as the market sees it: MW, MWh, grid side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p_charge_max_mw: float = Field(gt=0.0)
    p_discharge_max_mw: float = Field(gt=0.0)
    soc_min_mwh: float = Field(default=0.0, ge=0.0)
    soc_max_mwh: float = Field(gt=0.0)
    soc_initial_mwh: float = Field(ge=0.0)
    soc_final_mwh: float | None = Field(default=None, ge=0.0, description="minimum SOC at the end")
    eta_charge: float = Field(default=0.95, gt=0.0, le=1.0)
    eta_discharge: float = Field(default=0.95, gt=0.0, le=1.0)
    degradation_rs_mwh: float = Field(default=0.0, ge=0.0, description="cost per MWh of throughput")
    reserve_mw: float = Field(default=0.0, ge=0.0, description="kept both up and down for response")
    reserve_duration_h: float = Field(default=0.0, ge=0.0, description="hours r is sustained")
    reserve_up_mw: float = Field(default=0.0, ge=0.0, description="secondary reserve up (SRAS)")
    reserve_down_mw: float = Field(default=0.0, ge=0.0, description="secondary reserve down")
    reserve_sustain_h: float = Field(default=0.0, ge=0.0,
                                     description="hours the secondary reserve is sustained")
    reserve_floor_mwh: float | None = Field(
        default=None, ge=0.0, description="the secondary reserve's energy lies above this"
    )
    reserve_ceiling_mwh: float | None = Field(
        default=None, ge=0.0, description="and its room for charge below this"
    )

    @model_validator(mode="after")
    def _consistent(self) -> BatteryParams:
        if self.soc_max_mwh <= self.soc_min_mwh:
            raise ValueError("soc_max_mwh must be above soc_min_mwh")
        if not self.soc_min_mwh <= self.soc_initial_mwh <= self.soc_max_mwh:
            raise ValueError("soc_initial_mwh must lie within soc_min_mwh..soc_max_mwh")
        if self.reserve_mw + self.reserve_down_mw > self.p_charge_max_mw:
            raise ValueError("reserve_mw + reserve_down_mw exceeds the charge power limit"
                             if self.reserve_down_mw else
                             "reserve_mw exceeds the charge or discharge power limit")
        if self.reserve_mw + self.reserve_up_mw > self.p_discharge_max_mw:
            raise ValueError("reserve_mw + reserve_up_mw exceeds the discharge power limit"
                             if self.reserve_up_mw else
                             "reserve_mw exceeds the charge or discharge power limit")
        lo, hi = self.soc_bounds()
        if lo > hi:
            raise ValueError("the reserve's energy does not fit between soc_min and soc_max")
        if self.soc_final_mwh is not None and self.soc_final_mwh > hi:
            raise ValueError("soc_final_mwh lies above the highest SOC the reserve allows")
        return self

    @property
    def charge_limit_mw(self) -> float:
        """Charge power the market may use (the reserves' shares held back)."""
        return self.p_charge_max_mw - self.reserve_mw - self.reserve_down_mw

    @property
    def discharge_limit_mw(self) -> float:
        """Discharge power the market may use (the reserves' shares held back)."""
        return self.p_discharge_max_mw - self.reserve_mw - self.reserve_up_mw

    def soc_bounds(self) -> tuple[float, float]:
        """SOC range (MWh) the schedule may use, leaving the energy to sustain the reserves
        (the module docstring's ``lo`` and ``hi``)."""
        fr = self.reserve_mw * self.reserve_duration_h
        floor = max(self.soc_min_mwh, self.reserve_floor_mwh or 0.0)
        ceiling = self.soc_max_mwh
        if self.reserve_ceiling_mwh is not None:
            ceiling = min(ceiling, self.reserve_ceiling_mwh)
        up = fr + self.reserve_up_mw * self.reserve_sustain_h
        down = fr + self.reserve_down_mw * self.reserve_sustain_h
        return floor + up / self.eta_discharge, ceiling - down * self.eta_charge


def optimise(
    prices_rs_mwh: Sequence[float], battery: BatteryParams, first_block: int = 0
) -> Schedule:
    """The revenue-maximising schedule at the forecast prices (not yet rounded to 0.1 MW).

    ``prices_rs_mwh`` has one price per block from ``first_block`` on (96 for a DAM day,
    2 for an RTM session).
    """
    price = np.asarray(prices_rs_mwh, dtype=float)
    n = len(price)
    if n == 0 or not np.all(np.isfinite(price)):
        raise ScheduleError("need one finite forecast price per block", field="prices")
    dt, ec, ed = BLOCK_H, battery.eta_charge, battery.eta_discharge
    deg = battery.degradation_rs_mwh + _EPS_RS_MWH
    cost = np.concatenate([dt * (price + deg), dt * (deg - price), np.zeros(n)])

    eye = sparse.identity(n, format="csr")
    shift = sparse.eye(n, k=-1, format="csr")
    a_eq = sparse.hstack([-ec * dt * eye, (dt / ed) * eye, eye - shift], format="csr")
    b_eq = np.zeros(n)
    b_eq[0] = battery.soc_initial_mwh

    lo, hi = battery.soc_bounds()
    s_lo = np.full(n, lo)
    if battery.soc_final_mwh is not None:
        s_lo[-1] = max(lo, battery.soc_final_mwh)
    bounds = np.empty((3 * n, 2))
    bounds[:n] = (0.0, battery.charge_limit_mw)
    bounds[n : 2 * n] = (0.0, battery.discharge_limit_mw)
    bounds[2 * n :, 0] = s_lo
    bounds[2 * n :, 1] = hi

    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise ScheduleError(f"no feasible schedule: {res.message}", field="battery")
    x = res.x
    net = x[n : 2 * n] - x[:n]
    net[np.abs(net) < 1e-9] = 0.0
    net_t = tuple(float(v) for v in net)
    return Schedule(net_t, soc_trajectory(net_t, battery), tuple(float(p) for p in price),
                    revenue(net_t, price.tolist(), battery.degradation_rs_mwh),
                    first_block)  # fmt: skip


def greedy_schedule(
    prices_rs_mwh: Sequence[float], battery: BatteryParams, quantile: float = 0.25
) -> Schedule:
    """Charge flat out in the cheapest ``quantile`` of blocks, discharge in the dearest.

    Pure Python, no look-ahead: the naive strategy the programme is compared against.
    Respects the power limits, the SOC range and the reserve (not ``soc_final_mwh``).
    """
    prices = [float(p) for p in prices_rs_mwh]
    ranked = sorted(prices)
    k = max(0, min(len(ranked) - 1, int(quantile * len(ranked))))
    low, high = ranked[k], ranked[len(ranked) - 1 - k]
    lo, hi = battery.soc_bounds()
    dt, ec, ed = BLOCK_H, battery.eta_charge, battery.eta_discharge
    s = battery.soc_initial_mwh
    net: list[float] = []
    for p in prices:
        mw = 0.0
        if p <= low < high:
            mw = -max(0.0, min(battery.charge_limit_mw, (hi - s) / (ec * dt)))
        elif p >= high > low:
            mw = max(0.0, min(battery.discharge_limit_mw, (s - lo) * ed / dt))
        s += -mw * dt / ed if mw > 0 else -mw * dt * ec
        net.append(mw)
    net_t = tuple(net)
    return Schedule(net_t, soc_trajectory(net_t, battery), tuple(prices),
                    revenue(net_t, prices, battery.degradation_rs_mwh))  # fmt: skip
