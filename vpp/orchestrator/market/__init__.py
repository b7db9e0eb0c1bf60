"""Market gateway logic for the Indian Energy Exchange: products and their calendars,
bids and their validation, the battery schedule optimiser, and schedules to bids and back.

The optimiser (:mod:`.optimiser`: scipy's HiGHS, tens of MB) is imported on first use of
one of its names: the site configuration imports this package for its bid limits, and
only the market process schedules.
"""

from typing import TYPE_CHECKING, Any

from vpp.orchestrator.market.bids import Bid, BidLimits, Side, Step, on_grid, snap, validate_bid
from vpp.orchestrator.market.errors import (
    BidError,
    BidWindowError,
    ExchangeFileError,
    MarketError,
    ScheduleError,
)
from vpp.orchestrator.market.products import (
    BLOCK_H,
    BLOCK_S,
    BLOCKS_PER_DAY,
    IST,
    RTM_SESSIONS,
    Product,
    Window,
    bid_window,
    block_of,
    block_start,
    check_window,
    day_start,
    is_window_open,
    open_rtm_session,
    session_blocks,
    session_of_block,
)
from vpp.orchestrator.market.rounding import round_schedule
from vpp.orchestrator.market.schedule import (
    Award,
    BaseSchedule,
    Schedule,
    base_schedule,
    check_schedule,
    revenue,
    soc_trajectory,
    to_bids,
)

if TYPE_CHECKING:
    from vpp.orchestrator.market.optimiser import BatteryParams, greedy_schedule, optimise

_LAZY = frozenset({"BatteryParams", "greedy_schedule", "optimise"})

__all__ = [
    "BLOCKS_PER_DAY",
    "BLOCK_H",
    "BLOCK_S",
    "IST",
    "RTM_SESSIONS",
    "Award",
    "BaseSchedule",
    "BatteryParams",
    "Bid",
    "BidError",
    "BidLimits",
    "BidWindowError",
    "ExchangeFileError",
    "MarketError",
    "Product",
    "Schedule",
    "ScheduleError",
    "Side",
    "Step",
    "Window",
    "base_schedule",
    "bid_window",
    "block_of",
    "block_start",
    "check_schedule",
    "check_window",
    "day_start",
    "greedy_schedule",
    "is_window_open",
    "on_grid",
    "open_rtm_session",
    "optimise",
    "revenue",
    "round_schedule",
    "session_blocks",
    "session_of_block",
    "snap",
    "soc_trajectory",
    "to_bids",
    "validate_bid",
]


def __getattr__(name: str) -> Any:
    """The optimiser's names, imported when first asked for (see the module docstring)."""
    if name in _LAZY:
        from vpp.orchestrator.market import optimiser

        value = getattr(optimiser, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
