"""What the market gateway needs of an exchange and of a price forecast.

The gateway depends on these two protocols only. An exchange takes the bids of an
:class:`Auction` (a DAM delivery day, or an RTM session of one), later gives its
:class:`Clearing` (the awards and the block prices), and tells the clearing prices it
knows; a price forecast gives the prices the optimiser plans with. Implementations:

- the simulated exchange and its synthetic market (``vpp.sim.exchange_adapter``), which
  clear at once;
- the file exchange (:mod:`vpp.orchestrator.market.file_exchange`): bid files out, result
  files in, for a trader who carries them to the real exchange by hand.

:func:`vpp.orchestrator.market.exchanges.from_config` picks one from ``market.exchange``.
An exchange need not clear at once: :meth:`Exchange.results` answers None until it has,
and the gateway asks again every :attr:`Exchange.poll_s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from vpp.orchestrator.market.bids import Bid
from vpp.orchestrator.market.errors import MarketError
from vpp.orchestrator.market.products import BLOCKS_PER_DAY, Product, session_blocks
from vpp.orchestrator.market.schedule import Award

__all__ = ["Auction", "Clearing", "Exchange", "PriceForecast"]


@dataclass(frozen=True)
class Auction:
    """One auction: a DAM delivery day (``session`` None) or an RTM session of one."""

    product: Product
    delivery: date
    session: int | None = None

    def __post_init__(self) -> None:
        if (self.product is Product.RTM) != (self.session is not None):
            raise MarketError("an RTM auction, and only one, has a session", field="session")

    def blocks(self) -> Sequence[int]:
        """The delivery blocks (0-95) the auction clears."""
        if self.session is None:
            return range(BLOCKS_PER_DAY)
        return session_blocks(self.session)

    def __str__(self) -> str:
        what = f"{self.product.value} {self.delivery.isoformat()}"
        return what if self.session is None else f"{what} session {self.session}"


@dataclass(frozen=True)
class Clearing:
    """An auction's outcome: the award of each bid (by bid id; accepted 0 MW when not
    cleared) and the market clearing price of each block (None: no trade, or unknown)."""

    auction: Auction
    awards: dict[str, Award]
    prices: dict[int, float | None]


class Exchange(Protocol):
    """A power exchange as the gateway uses it."""

    poll_s: float
    """How often :meth:`results` is worth asking (s); 0: it answers at submission."""

    async def submit(self, auction: Auction, bids: Sequence[Bid]) -> None:
        """Place ``bids`` (all of ``auction``) on the exchange; they replace any bids the
        auction had. Raises a :class:`MarketError` when the exchange refuses them."""
        ...

    async def results(self, auction: Auction) -> Clearing | None:
        """The auction's clearing, or None while it has not cleared."""
        ...

    async def prices(self, product: Product, delivery: date) -> dict[int, float]:
        """The clearing prices (Rs/MWh) known for ``product`` on ``delivery``, per block."""
        ...

    def take_errors(self) -> list[MarketError]:
        """Input the exchange refused since the last call (a malformed result file); the
        gateway reports and counts each. Empty for an exchange that has none."""
        ...


class PriceForecast(Protocol):
    """Forecast prices the optimiser plans with."""

    def forecast(self, product: Product, delivery: date) -> list[float]:
        """One price (Rs/MWh) per block 0-95 of ``delivery`` for ``product``. Raises a
        :class:`MarketError` when there is none."""
        ...
