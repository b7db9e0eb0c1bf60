"""IEX product calendars: blocks, sessions, bid windows and gate closure, in IST."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from vpp.errors import VppError
from vpp.orchestrator.market import (
    IST,
    BidError,
    BidWindowError,
    Product,
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

DAY = date(2026, 11, 22)


def ist(y: int, mo: int, d: int, h: int, mi: int = 0, s: float = 0.0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=IST).timestamp() + s


def test_day_starts_at_ist_midnight_which_is_1830_utc_the_day_before() -> None:
    assert day_start(DAY) == datetime(2026, 11, 21, 18, 30, tzinfo=timezone.utc).timestamp()


def test_block_index_and_time_round_trip_over_the_day() -> None:
    for b in range(96):
        t = block_start(DAY, b)
        assert t == day_start(DAY) + 900 * b
        assert block_of(t) == (DAY, b)
        assert block_of(t + 899.999) == (DAY, b)
    assert block_of(day_start(DAY) - 0.001) == (DAY - timedelta(days=1), 95)
    assert block_start(DAY, 95) == ist(2026, 11, 22, 23, 45)


def test_block_out_of_range_is_a_bid_error_on_field_block() -> None:
    with pytest.raises(BidError) as e:
        block_start(DAY, 96)
    assert e.value.field == "block"
    assert isinstance(e.value, VppError) and isinstance(e.value, ValueError)


def test_rtm_sessions_cover_two_blocks_each() -> None:
    assert session_blocks(0) == (0, 1)
    assert session_blocks(10) == (20, 21)
    assert session_blocks(47) == (94, 95)
    assert [session_of_block(b) for b in (0, 1, 2, 95)] == [0, 0, 1, 47]
    covered = sorted(b for s in range(48) for b in session_blocks(s))
    assert covered == list(range(96))
    for bad in (-1, 48):
        with pytest.raises(BidError) as e:
            session_blocks(bad)
        assert e.value.field == "session"


def test_dam_window_is_1000_to_1200_ist_the_day_before_half_open() -> None:
    w = bid_window(Product.DAM, DAY)
    assert w.open == ist(2026, 11, 21, 10)
    assert w.close == ist(2026, 11, 21, 12)
    assert w.open == datetime(2026, 11, 21, 4, 30, tzinfo=timezone.utc).timestamp()
    assert not is_window_open(Product.DAM, DAY, w.open - 0.001)
    assert is_window_open(Product.DAM, DAY, w.open)
    assert is_window_open(Product.DAM, DAY, w.close - 0.001)
    assert not is_window_open(Product.DAM, DAY, w.close)
    # The same clock time on the delivery day itself is another day's window.
    assert not is_window_open(Product.DAM, DAY, ist(2026, 11, 22, 11))


def test_rtm_gate_closes_one_hour_before_delivery() -> None:
    # Session 10 delivers 05:00-05:30 IST: gate closure 04:00, bids from 03:45.
    w = bid_window(Product.RTM, DAY, 10)
    assert w.close == ist(2026, 11, 22, 4) == block_start(DAY, 20) - 3600
    assert w.open == ist(2026, 11, 22, 3, 45)
    assert is_window_open(Product.RTM, DAY, ist(2026, 11, 22, 3, 59, 59.999), 10)
    assert not is_window_open(Product.RTM, DAY, ist(2026, 11, 22, 4), 10)
    assert not is_window_open(Product.RTM, DAY, ist(2026, 11, 22, 3, 44, 59.999), 10)


def test_rtm_session_zero_closes_at_2300_ist_the_day_before() -> None:
    w = bid_window(Product.RTM, DAY, 0)
    assert w.close == ist(2026, 11, 21, 23)
    assert open_rtm_session(ist(2026, 11, 21, 22, 50)) == (DAY, 0)
    assert open_rtm_session(ist(2026, 11, 21, 23)) is None
    assert open_rtm_session(ist(2026, 11, 21, 23, 20)) == (DAY, 1)
    assert open_rtm_session(ist(2026, 11, 22, 22, 45)) == (DAY + timedelta(days=1), 0)


def test_check_window_raises_a_typed_error_that_says_why() -> None:
    check_window(Product.DAM, DAY, ist(2026, 11, 21, 11))
    with pytest.raises(BidWindowError, match="closed") as e:
        check_window(Product.DAM, DAY, ist(2026, 11, 21, 12))
    assert e.value.field == "submitted_at"
    assert "2026-11-21 12:00:00 IST" in str(e.value)
    with pytest.raises(BidWindowError, match="not open yet"):
        check_window(Product.RTM, DAY, ist(2026, 11, 22, 3), 10)
    with pytest.raises(BidError, match="session"):
        bid_window(Product.RTM, DAY)
