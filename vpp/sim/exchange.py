"""A simulated power exchange: a double-sided closed auction per 15-minute block.

Clearing of one block (:func:`clear_block`), on step curves (each price-quantity step is a
limit order; no interpolation between steps):

1. Demand ``D(p)`` is the volume of buy steps priced at ``p`` or more, supply ``S(p)``
   the volume of sell steps priced at ``p`` or less. Among the steps' prices, the
   cleared volume is ``Q = max min(D(p), S(p))``; ``Q = 0`` means no trade and no price.
2. The clearing price is taken among the prices reaching ``Q``, those with the smallest
   imbalance ``|D(p) - S(p)|``: the midpoint of the lowest and highest of them, rounded
   down to the tick. Every trade in the block settles at this one price.
3. On each side, steps are accepted in price order (buys from the highest, sells from
   the lowest) until ``Q`` is reached; the steps at the price level that crosses ``Q``
   share what is left pro rata to their volume.

:class:`SyntheticMarket` adds other participants' buy and sell curves around a daily price
profile, so that our bids meet a market; the same seed gives the same market.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import accumulate, groupby

import numpy as np

from vpp.orchestrator.market import (
    BLOCKS_PER_DAY,
    Award,
    Bid,
    BidError,
    BidLimits,
    Product,
    Side,
    Step,
    check_window,
    session_blocks,
    snap,
    validate_bid,
)

__all__ = [
    "BlockResult",
    "ClearingResult",
    "Order",
    "SimExchange",
    "SyntheticMarket",
    "clear_block",
    "step_bid",
]

log = logging.getLogger(__name__)
_TOL = 1e-9


@dataclass(frozen=True)
class Order:
    """One limit order (a step of a bid): ``key`` says whose it is."""

    key: int
    side: Side
    price_rs_mwh: float
    volume_mw: float


@dataclass(frozen=True)
class BlockResult:
    """A block's market clearing price (None: no trade) and volume, and what was offered."""

    block: int
    price_rs_mwh: float | None
    volume_mw: float
    demand_mw: float
    supply_mw: float


def _fill(orders: list[Order], quantity: float, accepted: dict[int, float]) -> None:
    left = quantity
    for _price, level_iter in groupby(orders, key=lambda o: o.price_rs_mwh):
        level = list(level_iter)
        total = sum(o.volume_mw for o in level)
        share = 1.0 if total <= left + _TOL else left / total
        for o in level:
            accepted[o.key] = accepted.get(o.key, 0.0) + o.volume_mw * share
        left = max(0.0, left - total)
        if left <= _TOL:
            break


def clear_block(
    orders: Sequence[Order], tick: float = 1.0, block: int = 0
) -> tuple[BlockResult, dict[int, float]]:
    """Clear one block (see the module docstring): the result and accepted MW per key."""
    buys = sorted((o for o in orders if o.side is Side.BUY), key=lambda o: -o.price_rs_mwh)
    sells = sorted((o for o in orders if o.side is Side.SELL), key=lambda o: o.price_rs_mwh)
    demand = float(sum(o.volume_mw for o in buys))
    supply = float(sum(o.volume_mw for o in sells))
    no_trade = BlockResult(block, None, 0.0, demand, supply)
    if not buys or not sells:
        return no_trade, {}
    buy_p = [o.price_rs_mwh for o in reversed(buys)]  # ascending
    buy_cum = list(accumulate(o.volume_mw for o in reversed(buys)))  # volume at < index
    sell_p = [o.price_rs_mwh for o in sells]
    sell_cum = list(accumulate(o.volume_mw for o in sells))

    def d_at(p: float) -> float:
        i = bisect_left(buy_p, p)
        return demand - (buy_cum[i - 1] if i else 0.0)

    def s_at(p: float) -> float:
        i = bisect_right(sell_p, p)
        return sell_cum[i - 1] if i else 0.0

    curve = [(p, d_at(p), s_at(p)) for p in sorted(set(buy_p) | set(sell_p))]
    q = max(min(d, s) for _p, d, s in curve)
    if q <= _TOL:
        return no_trade, {}
    best = [(p, abs(d - s)) for p, d, s in curve if min(d, s) >= q - _TOL]
    least = min(gap for _p, gap in best)
    prices = [p for p, gap in best if gap <= least + _TOL]
    mid = (min(prices) + max(prices)) / 2.0
    price = snap(math.floor(mid / tick + _TOL) * tick, tick)
    accepted: dict[int, float] = {}
    _fill([o for o in buys if o.price_rs_mwh >= price], q, accepted)
    _fill([o for o in sells if o.price_rs_mwh <= price], q, accepted)
    return BlockResult(block, price, float(q), demand, supply), accepted


@dataclass(frozen=True)
class SyntheticMarket:
    """Other participants: ``orders_per_side`` buy and sell steps per block.

    Their prices scatter (normal, ``spread_rs_mwh``) around a daily profile (cheap at
    night and at the solar noon, dear in the evening peak); volumes are uniform in
    ``volume_mw``. Each block draws from its own generator seeded by (seed, day, block).
    """

    seed: int = 0
    orders_per_side: int = 20
    volume_mw: tuple[float, float] = (20.0, 200.0)
    base_rs_mwh: float = 4000.0
    spread_rs_mwh: float = 800.0

    def reference_price(self, block: int) -> float:
        """The profile's price for ``block`` (Rs/MWh)."""
        h = (block + 0.5) / 4.0
        evening = 3500.0 * math.exp(-(((h - 20.0) / 2.0) ** 2))
        solar = -1800.0 * math.exp(-(((h - 13.0) / 2.5) ** 2))
        night = -800.0 * math.exp(-(((h - 3.0) / 2.5) ** 2))
        return self.base_rs_mwh + evening + solar + night

    def orders(self, delivery: date, block: int, limits: BidLimits, first_key: int) -> list[Order]:
        """The block's synthetic orders, keys counting up from ``first_key``."""
        rng = np.random.default_rng([self.seed, delivery.toordinal(), block])
        ref = self.reference_price(block)
        lim, n = limits, self.orders_per_side
        tick, step = lim.price_tick_rs_mwh, lim.volume_step_mw
        out: list[Order] = []
        for side in (Side.BUY, Side.SELL):
            price = np.round(rng.normal(ref, self.spread_rs_mwh, n) / tick) * tick
            price = np.clip(price, lim.price_min_rs_mwh, lim.price_max_rs_mwh).round(6)
            mw = np.round(rng.uniform(*self.volume_mw, n) / step) * step
            mw = np.maximum(lim.min_volume_mw, mw).round(6)
            pairs = zip(price.tolist(), mw.tolist(), strict=True)
            out += [Order(first_key + len(out) + i, side, p, v) for i, (p, v) in enumerate(pairs)]
        return out


@dataclass(frozen=True)
class ClearingResult:
    """Per-block results and per-bid awards of one auction."""

    blocks: dict[int, BlockResult]
    awards: dict[str, Award]


@dataclass
class SimExchange:
    """Collects validated bids per auction and clears them with the synthetic market.

    An auction is a DAM delivery day, or an RTM session of a delivery day. A bid whose
    ``bid_id`` is already in its auction's book replaces the earlier one. Refused bids
    raise a :class:`~vpp.orchestrator.market.BidError` or ``BidWindowError`` and are
    counted in :attr:`rejected`.
    """

    limits: BidLimits = field(default_factory=BidLimits)
    market: SyntheticMarket | None = field(default_factory=SyntheticMarket)
    rejected: int = 0
    _book: dict[tuple[Product, date, int | None], dict[str, Bid]] = field(default_factory=dict)

    def submit(self, bid: Bid, now: float | None = None) -> None:
        """Accept ``bid`` into its auction (checking the bid window when ``now`` is given)."""
        try:
            validate_bid(bid, self.limits)
            if now is not None:
                check_window(bid.product, bid.delivery, now, bid.session)
        except ValueError as e:
            self.rejected += 1
            log.warning("bid %s refused: %s", bid.bid_id, e)
            raise
        session = bid.session if bid.product is Product.RTM else None
        self._book.setdefault((bid.product, bid.delivery, session), {})[bid.bid_id] = bid

    def clear(
        self, product: Product, delivery: date, session: int | None = None
    ) -> ClearingResult:
        """Clear the auction's blocks; its bids leave the book."""
        if product is Product.DAM:
            blocks: Sequence[int] = range(BLOCKS_PER_DAY)
            session = None
        else:
            if session is None:
                raise BidError("an RTM auction needs its session", field="session")
            blocks = session_blocks(session)
        bids = list(self._book.pop((product, delivery, session), {}).values())
        results: dict[int, BlockResult] = {}
        accepted: dict[int, float] = {}
        for b in blocks:
            orders = [Order(i, bid.side, s.price_rs_mwh, s.volume_mw)
                      for i, bid in enumerate(bids) if bid.block == b
                      for s in bid.steps]  # fmt: skip
            if self.market is not None:
                orders += self.market.orders(delivery, b, self.limits, first_key=len(bids))
            results[b], got = clear_block(orders, self.limits.price_tick_rs_mwh, b)
            accepted.update((k, v) for k, v in got.items() if k < len(bids))
        awards = {
            bid.bid_id: Award(bid.bid_id, product, delivery, bid.block, bid.side,
                              accepted.get(i, 0.0), results[bid.block].price_rs_mwh)
            for i, bid in enumerate(bids)
        }  # fmt: skip
        return ClearingResult(results, awards)


def step_bid(bid_id: str, delivery: date, block: int, side: Side,
             steps: Sequence[tuple[float, float]]) -> Bid:  # fmt: skip
    """A DAM bid from (price, MW) pairs: a shorthand for tests and benchmarks."""
    return Bid(bid_id, Product.DAM, delivery, block, side,
               tuple(Step(p, v) for p, v in steps))  # fmt: skip
