"""Schedules: from the optimiser's MW per block to exchange bids, and from the exchange's
awards back to the base schedule (kW per block) the field controllers follow.

A :class:`Schedule` holds net MW per block (positive = discharge = sell), the SOC at each
block boundary and the expected revenue. :func:`~vpp.orchestrator.market.rounding.round_schedule`
moves it onto the exchange's volume step without breaking a battery constraint, and
:func:`check_schedule` recomputes every constraint from the net MW alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from vpp.orchestrator.market.bids import Bid, BidLimits, Side, Step, snap
from vpp.orchestrator.market.products import (
    BLOCK_H,
    BLOCK_S,
    BLOCKS_PER_DAY,
    Product,
    block_start,
    session_of_block,
)

if TYPE_CHECKING:
    from vpp.orchestrator.market.optimiser import BatteryParams

__all__ = [
    "Award",
    "BaseSchedule",
    "Schedule",
    "base_schedule",
    "check_schedule",
    "drawn_mwh",
    "revenue",
    "soc_trajectory",
    "to_bids",
]

_TOL = 1e-6  # MW / MWh slack when re-checking a schedule


@dataclass(frozen=True)
class Schedule:
    """Net MW per block (+ discharge), SOC (MWh) at the n+1 boundaries, revenue (Rs).

    ``relaxed`` lists the constraints (as :func:`check_schedule` words them) that a
    rounded schedule breaks because the volume grid cannot meet them (see
    :mod:`vpp.orchestrator.market.rounding`); empty for every other schedule.
    """

    net_mw: tuple[float, ...]
    soc_mwh: tuple[float, ...]
    prices_rs_mwh: tuple[float, ...]
    revenue_rs: float
    first_block: int = 0
    relaxed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Award:
    """What the exchange accepted of one bid: MW at the block's clearing price."""

    bid_id: str
    product: Product
    delivery: date
    block: int
    side: Side
    accepted_mw: float
    price_rs_mwh: float | None


@dataclass(frozen=True)
class BaseSchedule:
    """kW per 15-minute block from ``start`` (UNIX s); positive = discharge."""

    start: float
    kw: tuple[float, ...]

    @property
    def end(self) -> float:
        """UNIX time the last block ends."""
        return self.start + BLOCK_S * len(self.kw)

    def at(self, t: float) -> float:
        """The base setpoint at UNIX time ``t`` (0 outside the schedule)."""
        i = math.floor((t - self.start) / BLOCK_S)
        return self.kw[i] if 0 <= i < len(self.kw) else 0.0


def drawn_mwh(p: float, battery: BatteryParams) -> float:
    """Energy the battery loses in a block at net ``p`` MW (negative: gains)."""
    # Discharge draws more than it delivers; charge stores less than it takes.
    return p * BLOCK_H / battery.eta_discharge if p > 0 else p * BLOCK_H * battery.eta_charge


def soc_trajectory(net_mw: Sequence[float], battery: BatteryParams) -> tuple[float, ...]:
    """SOC (MWh) at every block boundary, starting from the battery's initial SOC."""
    s = battery.soc_initial_mwh
    out = [s]
    for p in net_mw:
        s -= drawn_mwh(p, battery)
        out.append(s)
    return tuple(out)


def revenue(net_mw: Sequence[float], prices: Sequence[float], degradation_rs_mwh: float) -> float:
    """Rs earned at ``prices`` minus the degradation cost of the throughput."""
    return sum(BLOCK_H * (p * c - degradation_rs_mwh * abs(p))
               for p, c in zip(net_mw, prices, strict=True))  # fmt: skip


def check_schedule(net_mw: Sequence[float], battery: BatteryParams) -> list[str]:
    """Every constraint the schedule breaks, recomputed from ``net_mw`` (empty when none)."""
    bad: list[str] = []
    lo, hi = battery.soc_bounds()
    for t, p in enumerate(net_mw):
        if p > battery.discharge_limit_mw + _TOL or -p > battery.charge_limit_mw + _TOL:
            bad.append(f"block {t}: {p:g} MW beyond the power limit less the reserve")
    soc = soc_trajectory(net_mw, battery)
    for t, s in enumerate(soc[1:]):
        if not lo - _TOL <= s <= hi + _TOL:
            bad.append(f"block {t}: SOC {s:.6g} MWh outside {lo:.6g}..{hi:.6g}")
    final = battery.soc_final_mwh
    if final is not None and soc[-1] < final - _TOL:
        bad.append(f"final SOC {soc[-1]:.6g} MWh below {final:g}")
    return bad


def to_bids(
    schedule: Schedule,
    delivery: date,
    *,
    product: Product = Product.DAM,
    limits: BidLimits | None = None,
    price_taker: bool = True,
) -> list[Bid]:
    """One bid per block with a non-zero (rounded) net: sell for discharge, buy for charge.

    A price taker sells at the band's floor and buys at its cap, so the schedule clears
    whatever the price (the exchange pays the uniform clearing price, not the bid's);
    otherwise the limit is the forecast price on the tick.
    """
    lim = limits or BidLimits()
    bids = []
    for i, p in enumerate(schedule.net_mw):
        if p == 0.0:
            continue
        block = schedule.first_block + i
        side = Side.SELL if p > 0 else Side.BUY
        if price_taker:
            price = lim.price_min_rs_mwh if side is Side.SELL else lim.price_max_rs_mwh
        else:
            price = snap(schedule.prices_rs_mwh[i], lim.price_tick_rs_mwh)
            price = min(lim.price_max_rs_mwh, max(lim.price_min_rs_mwh, price))
        session = session_of_block(block) if product is Product.RTM else None
        bids.append(Bid(f"{product.value}-{delivery.isoformat()}-{block:02d}-{side.value}",
                        product, delivery, block, side,
                        (Step(price, snap(abs(p), lim.volume_step_mw)),), session))  # fmt: skip
    return bids


def base_schedule(awards: Iterable[Award], delivery: date) -> BaseSchedule:
    """kW per block of ``delivery`` from the exchange's awards (sells +, buys -)."""
    kw = [0.0] * BLOCKS_PER_DAY
    for a in awards:
        if a.delivery != delivery:
            continue
        sign = 1.0 if a.side is Side.SELL else -1.0
        kw[a.block] += sign * 1000.0 * a.accepted_mw
    return BaseSchedule(block_start(delivery, 0), tuple(kw))
