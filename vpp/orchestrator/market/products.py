"""Products of the Indian Energy Exchange: Day-Ahead and Real-Time Market calendars.

All exchange times are Indian Standard Time (UTC+5:30, no daylight saving); the API takes
and returns UNIX seconds and the delivery day as a :class:`datetime.date` in IST.

- Day-Ahead Market (DAM): 96 blocks of 15 minutes of the next delivery day; bids are
  accepted 10:00-12:00 IST on the day before delivery.
- Real-Time Market (RTM): 48 half-hourly sessions per day, session ``s`` covering the
  blocks ``2s`` and ``2s+1``; its gate closes 1 hour before its delivery starts, and bids
  are accepted in the 15 minutes before gate closure (a configurable default).

Blocks are numbered 0-95 from 00:00 IST (IEX's block number is ours + 1). Windows are
half-open: open at their start, closed from their end on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum

from vpp.orchestrator.market.errors import BidError, BidWindowError

__all__ = [
    "BLOCKS_PER_DAY",
    "BLOCK_H",
    "BLOCK_S",
    "DAM_CLOSE",
    "DAM_OPEN",
    "IST",
    "RTM_GATE_S",
    "RTM_SESSIONS",
    "RTM_WINDOW_S",
    "Product",
    "Window",
    "bid_window",
    "block_of",
    "block_start",
    "check_window",
    "day_start",
    "is_window_open",
    "open_rtm_session",
    "session_blocks",
    "session_of_block",
]

IST = timezone(timedelta(hours=5, minutes=30), "IST")
BLOCK_S = 900
BLOCK_H = BLOCK_S / 3600.0
BLOCKS_PER_DAY = 96
RTM_SESSIONS = 48
DAM_OPEN = timedelta(hours=10)  # on the day before delivery, IST
DAM_CLOSE = timedelta(hours=12)
RTM_GATE_S = 3600  # delivery starts this long after gate closure
RTM_WINDOW_S = 900  # bids accepted this long before gate closure (check)


class Product(str, Enum):
    """An exchange product."""

    DAM = "DAM"
    RTM = "RTM"


@dataclass(frozen=True)
class Window:
    """A bid window ``[open, close)`` in UNIX seconds."""

    open: float
    close: float

    def contains(self, t: float) -> bool:
        """Whether bids are accepted at ``t``."""
        return self.open <= t < self.close


def day_start(delivery: date) -> float:
    """UNIX time of 00:00 IST on ``delivery``."""
    return datetime(delivery.year, delivery.month, delivery.day, tzinfo=IST).timestamp()


def _check_block(block: int) -> None:
    if not 0 <= block < BLOCKS_PER_DAY:
        raise BidError(f"must be 0-{BLOCKS_PER_DAY - 1}, got {block}", field="block")


def _check_session(session: int) -> None:
    if not 0 <= session < RTM_SESSIONS:
        raise BidError(f"must be 0-{RTM_SESSIONS - 1}, got {session}", field="session")


def block_start(delivery: date, block: int) -> float:
    """UNIX time when ``block`` (0-95) of the IST day ``delivery`` starts."""
    _check_block(block)
    return day_start(delivery) + block * BLOCK_S


def block_of(t: float) -> tuple[date, int]:
    """The IST delivery day and block (0-95) containing the UNIX time ``t``."""
    local = datetime.fromtimestamp(t, IST)
    since = local - local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.date(), int(since.total_seconds() // BLOCK_S)


def session_blocks(session: int) -> tuple[int, int]:
    """The two blocks an RTM session (0-47) delivers."""
    _check_session(session)
    return 2 * session, 2 * session + 1


def session_of_block(block: int) -> int:
    """The RTM session that delivers ``block``."""
    _check_block(block)
    return block // 2


def bid_window(
    product: Product,
    delivery: date,
    session: int | None = None,
    *,
    rtm_window_s: float = RTM_WINDOW_S,
) -> Window:
    """The bid window of a DAM delivery day or of an RTM session on ``delivery``."""
    if product is Product.DAM:
        eve = day_start(delivery - timedelta(days=1))
        return Window(eve + DAM_OPEN.total_seconds(), eve + DAM_CLOSE.total_seconds())
    if session is None:
        raise BidError("an RTM bid needs its session", field="session")
    first, _ = session_blocks(session)
    gate = block_start(delivery, first) - RTM_GATE_S
    return Window(gate - rtm_window_s, gate)


def is_window_open(
    product: Product, delivery: date, t: float, session: int | None = None
) -> bool:
    """Whether bids for ``delivery`` (and the RTM ``session``) are accepted at ``t``."""
    return bid_window(product, delivery, session).contains(t)


def check_window(product: Product, delivery: date, t: float, session: int | None = None) -> None:
    """Raise :class:`BidWindowError` unless the bid window is open at ``t``."""
    w = bid_window(product, delivery, session)
    if not w.contains(t):
        def ist(x: float) -> str:
            return datetime.fromtimestamp(x, IST).strftime("%Y-%m-%d %H:%M:%S IST")

        what = f"{product.value} {delivery.isoformat()}"
        if session is not None:
            what += f" session {session}"
        state = "not open yet" if t < w.open else "closed"
        raise BidWindowError(
            f"{what}: window {ist(w.open)} - {ist(w.close)} is {state} at {ist(t)}",
            field="submitted_at",
        )


def open_rtm_session(t: float) -> tuple[date, int] | None:
    """The RTM session (delivery day, session) whose bid window is open at ``t``, if any."""
    # The window closes RTM_GATE_S before delivery, so look ahead from t by that much.
    day, block = block_of(t + RTM_GATE_S + RTM_WINDOW_S)
    session = session_of_block(block)
    if is_window_open(Product.RTM, day, t, session):
        return day, session
    return None
