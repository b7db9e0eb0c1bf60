"""The simulated exchange behind the market gateway's interfaces.

:class:`SimMarketExchange` is an :class:`~vpp.orchestrator.market.exchange.Exchange` over
:class:`~vpp.sim.exchange.SimExchange`: a submission is cleared at once (with the
synthetic market's other participants), so :meth:`~SimMarketExchange.results` answers
right after it. :class:`SyntheticForecast` is a
:class:`~vpp.orchestrator.market.exchange.PriceForecast`: the synthetic market's daily
profile with seeded normal noise (``noise`` of the price), drawn apart for the DAM and
the RTM, so that the forecast is close to, but not, what clears.

This module depends on the market's domain (``vpp.orchestrator.market``), never the
reverse: the gateway gets these objects from
:func:`vpp.orchestrator.market.exchanges.from_config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from vpp.orchestrator.market import BLOCKS_PER_DAY, Bid, BidLimits, MarketError, Product
from vpp.orchestrator.market.exchange import Auction, Clearing
from vpp.sim.exchange import SimExchange, SyntheticMarket

__all__ = ["SimMarketExchange", "SyntheticForecast", "sim_exchange"]

#: Forecast error: normal noise of this share of the profile price.
FORECAST_NOISE = 0.05


@dataclass
class SimMarketExchange:
    """The simulated exchange as the gateway's exchange: clears each auction at submission."""

    exchange: SimExchange
    poll_s: float = 0.0
    _cleared: dict[Auction, Clearing] = field(default_factory=dict)
    _prices: dict[tuple[Product, date], dict[int, float]] = field(default_factory=dict)

    async def submit(self, auction: Auction, bids: Sequence[Bid]) -> None:
        """Validate ``bids`` into the book and clear the auction at once."""
        for bid in bids:
            self.exchange.submit(bid)
        result = self.exchange.clear(auction.product, auction.delivery, auction.session)
        prices = {b: r.price_rs_mwh for b, r in result.blocks.items()}
        self._cleared[auction] = Clearing(auction, dict(result.awards), prices)
        known = self._prices.setdefault((auction.product, auction.delivery), {})
        known.update((b, p) for b, p in prices.items() if p is not None)

    async def results(self, auction: Auction) -> Clearing | None:
        """The clearing of the auction's last submission (None before any)."""
        return self._cleared.pop(auction, None)

    async def prices(self, product: Product, delivery: date) -> dict[int, float]:
        """The clearing prices of the auctions cleared so far."""
        return dict(self._prices.get((product, delivery), {}))

    def take_errors(self) -> list[MarketError]:
        """None: a refused bid raises at submission."""
        return []


@dataclass(frozen=True)
class SyntheticForecast:
    """The synthetic market's profile with seeded noise, within the price band."""

    market: SyntheticMarket
    seed: int
    limits: BidLimits
    noise: float = FORECAST_NOISE

    def forecast(self, product: Product, delivery: date) -> list[float]:
        """96 prices (Rs/MWh) of ``delivery``; the same seed, day and product repeat."""
        lim = self.limits
        rtm = int(product is Product.RTM)
        rng = np.random.default_rng([self.seed, delivery.toordinal(), rtm])
        ref = np.array([self.market.reference_price(b) for b in range(BLOCKS_PER_DAY)])
        noisy = ref * (1.0 + self.noise * rng.standard_normal(BLOCKS_PER_DAY))
        clipped = np.clip(noisy, lim.price_min_rs_mwh, lim.price_max_rs_mwh)
        return [float(p) for p in clipped]


def sim_exchange(limits: BidLimits, seed: int) -> tuple[SimMarketExchange, SyntheticForecast]:
    """The simulated exchange and its forecast for ``seed`` (the same synthetic market)."""
    market = SyntheticMarket(seed=seed)
    return (SimMarketExchange(SimExchange(limits=limits, market=market)),
            SyntheticForecast(market, seed, limits))  # fmt: skip
