"""Which exchange the gateway trades on: ``market.exchange`` resolved to an
:class:`~vpp.orchestrator.market.exchange.Exchange` and a
:class:`~vpp.orchestrator.market.exchange.PriceForecast`.

This is the one place of the market package that names an implementation, so the one
place allowed to reach the simulator, and only lazily, when ``"sim"`` is chosen: the
gateway and the market's domain modules never import ``vpp.sim`` (a test checks), and a
site trading through files never loads the simulator. It lives here rather than in the
launcher because the launcher starts each role by its module's ``serve``, which calls
this; the gateway's constructor takes whatever exchange it is given (the tests give it
their own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vpp.errors import ConfigError
from vpp.orchestrator.market.exchange import Exchange, PriceForecast
from vpp.orchestrator.market.file_exchange import FileExchange, FilePriceForecast

if TYPE_CHECKING:
    from vpp.config.models import MarketSection

__all__ = ["from_config"]


def from_config(market: MarketSection) -> tuple[Exchange, PriceForecast]:
    """The exchange and forecast ``market.exchange`` names (``sim`` or ``file``)."""
    if market.exchange == "file":
        cfg = market.file_exchange
        try:
            return FileExchange(cfg, market.limits), FilePriceForecast(cfg.dir)
        except OSError as exc:
            raise ConfigError(f"market.file_exchange.dir: cannot make its folders in "
                              f"{cfg.dir!r} ({exc.strerror})") from None
    from vpp.sim.exchange_adapter import sim_exchange

    return sim_exchange(market.limits, market.seed)
