"""The simulated exchange: uniform-price clearing on hand-computed books, and the auction."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.orchestrator.market import (
    IST,
    Bid,
    BidError,
    BidWindowError,
    Product,
    Side,
    Step,
)
from vpp.sim.exchange import Order, SimExchange, SyntheticMarket, clear_block, step_bid

B, S = Side.BUY, Side.SELL
DAY = date(2026, 11, 22)


def book(*orders: tuple[Side, float, float]) -> list[Order]:
    return [Order(i, side, p, v) for i, (side, p, v) in enumerate(orders)]


def test_crossing_curves_clear_at_the_midpoint_of_the_equal_volume_range() -> None:
    # D: 30 MW up to 20, 20 up to 40, 10 up to 60; S: 10 from 10, 20 from 30, 30 from 50.
    # 20 MW trade at any price in 30..40 with D = S: the price is 35.
    r, acc = clear_block(book((B, 60, 10), (B, 40, 10), (B, 20, 10),
                              (S, 10, 10), (S, 30, 10), (S, 50, 10)))  # fmt: skip
    assert (r.price_rs_mwh, r.volume_mw) == (35.0, 20.0)
    assert (r.demand_mw, r.supply_mw) == (30.0, 30.0)
    assert acc == {0: 10.0, 1: 10.0, 3: 10.0, 4: 10.0}


def test_ties_at_the_margin_share_pro_rata() -> None:
    # 10 MW of buyers at 40 for 5 MW offered at 30: the 6 and 4 MW buyers get 3 and 2.
    r, acc = clear_block(book((B, 40, 6), (B, 40, 4), (S, 30, 5)))
    assert (r.price_rs_mwh, r.volume_mw) == (35.0, 5.0)
    assert acc == {0: pytest.approx(3.0), 1: pytest.approx(2.0), 2: 5.0}


def test_no_crossing_means_no_trade_and_no_price() -> None:
    r, acc = clear_block(book((B, 20, 5), (S, 30, 5)))
    assert (r.price_rs_mwh, r.volume_mw, acc) == (None, 0.0, {})
    r, acc = clear_block(book((B, 20, 5)))
    assert (r.price_rs_mwh, r.volume_mw, r.demand_mw) == (None, 0.0, 5.0)


def test_price_rounds_down_to_the_tick_and_the_marginal_seller_is_cut() -> None:
    # 10 MW trade at 45 and at 50 (imbalance 6 both): midpoint 47.5 -> 47.
    r, acc = clear_block(book((B, 50, 10), (B, 40, 5), (S, 30, 8), (S, 45, 8)))
    assert (r.price_rs_mwh, r.volume_mw) == (47.0, 10.0)
    assert acc == {0: 10.0, 2: 8.0, 3: pytest.approx(2.0)}


def test_the_smallest_imbalance_picks_the_price_range() -> None:
    # 10 MW trade at 40, 45, 48 and 50; the imbalance is 3 at 40 and 45, 5 above: 42.
    r, acc = clear_block(book((B, 50, 10), (B, 45, 3), (S, 40, 10), (S, 48, 5)))
    assert (r.price_rs_mwh, r.volume_mw) == (42.0, 10.0)
    assert acc == {0: 10.0, 2: 10.0}  # the 3 MW buyer at 45 gets nothing



def test_synthetic_market_is_deterministic_and_balanced() -> None:
    ex1, ex2 = SimExchange(market=SyntheticMarket(seed=7)), SimExchange(market=SyntheticMarket(7))
    r1, r2 = ex1.clear(Product.DAM, DAY), ex2.clear(Product.DAM, DAY)
    assert r1.blocks == r2.blocks and len(r1.blocks) == 96
    other = SimExchange(market=SyntheticMarket(seed=8)).clear(Product.DAM, DAY)
    assert [b.price_rs_mwh for b in other.blocks.values()] != [
        b.price_rs_mwh for b in r1.blocks.values()
    ]
    prices = [r1.blocks[b].price_rs_mwh for b in range(96)]
    assert all(p is not None for p in prices)
    # The profile's evening peak (20:00, block 80) clears above the solar trough (13:00).
    assert r1.blocks[80].price_rs_mwh > r1.blocks[52].price_rs_mwh  # type: ignore[operator]
    # Every block: what buyers got equals what sellers gave equals the cleared volume.
    m = SyntheticMarket(seed=7)
    orders = m.orders(DAY, 80, SimExchange().limits, 0)
    res, acc = clear_block(orders, 1.0, 80)
    got_b = sum(v for k, v in acc.items() if orders[k].side is B)
    got_s = sum(v for k, v in acc.items() if orders[k].side is S)
    assert got_b == pytest.approx(res.volume_mw) and got_s == pytest.approx(res.volume_mw)


def test_our_bids_meet_the_market_and_move_the_price_the_right_way() -> None:
    base = SimExchange().clear(Product.DAM, DAY).blocks[80]
    ex = SimExchange()
    ex.submit(step_bid("sell-big", DAY, 80, S, [(0.0, 500.0)]))
    ex.submit(step_bid("buy-cheap", DAY, 80, B, [(100.0, 5.0)]))
    ex.submit(Bid("curve", Product.DAM, DAY, 81, Side.SELL, (Step(0.0, 2.0), Step(9000.0, 3.0))))
    res = ex.clear(Product.DAM, DAY)
    assert res.blocks[80].price_rs_mwh < base.price_rs_mwh  # type: ignore[operator]
    big = res.awards["sell-big"]
    assert big.accepted_mw == pytest.approx(500.0)
    assert big.price_rs_mwh == res.blocks[80].price_rs_mwh
    assert res.awards["buy-cheap"].accepted_mw == 0.0
    # The floor step of the curve clears; the Rs 9000 step is above the market.
    assert res.awards["curve"].accepted_mw == pytest.approx(2.0)
    assert ex.clear(Product.DAM, DAY).awards == {}  # the book was emptied


def test_bad_bids_are_refused_counted_and_windows_checked() -> None:
    ex = SimExchange()
    with pytest.raises(BidError):
        ex.submit(step_bid("x", DAY, 3, S, [(0.5, 1.0)]))
    late = datetime(2026, 11, 21, 12, 0, tzinfo=IST).timestamp()
    with pytest.raises(BidWindowError):
        ex.submit(step_bid("y", DAY, 3, S, [(1.0, 1.0)]), now=late)
    assert ex.rejected == 2
    ex.submit(step_bid("z", DAY, 3, S, [(1.0, 1.0)]), now=late - 1)
    rtm = Bid.single("r", Product.RTM, DAY, 21, Side.BUY, 1.0, 10_000.0, session=10)
    ex.submit(rtm)
    res = ex.clear(Product.RTM, DAY, 10)
    assert sorted(res.blocks) == [20, 21]
    assert res.awards["r"].accepted_mw == pytest.approx(1.0)
    assert list(ex.clear(Product.DAM, DAY).awards) == ["z"]


orders_st = st.lists(
    st.tuples(st.sampled_from([B, S]), st.integers(0, 60), st.integers(1, 50)), max_size=25
)


@settings(max_examples=300, deadline=None)
@given(orders_st)
def test_clearing_invariants_on_random_books(raw: list[tuple[Side, int, int]]) -> None:
    orders = book(*((side, float(p), v / 10) for side, p, v in raw))
    r, acc = clear_block(orders)
    buys = [o for o in orders if o.side is B]
    sells = [o for o in orders if o.side is S]
    crossing = bool(buys and sells) and max(o.price_rs_mwh for o in buys) >= min(
        o.price_rs_mwh for o in sells
    )
    assert (r.price_rs_mwh is not None) == crossing
    # The volume is the most any single price could trade (brute force over all prices).
    best = 0.0
    for p in range(61):
        d = sum(o.volume_mw for o in buys if o.price_rs_mwh >= p)
        s = sum(o.volume_mw for o in sells if o.price_rs_mwh <= p)
        best = max(best, min(d, s))
    assert r.volume_mw == pytest.approx(best)
    got_b = sum(v for k, v in acc.items() if orders[k].side is B)
    got_s = sum(v for k, v in acc.items() if orders[k].side is S)
    assert got_b == pytest.approx(r.volume_mw) and got_s == pytest.approx(r.volume_mw)
    for k, v in acc.items():
        o = orders[k]
        assert -1e-9 <= v <= o.volume_mw + 1e-9
        assert r.price_rs_mwh is not None
        if o.side is B:
            assert o.price_rs_mwh >= r.price_rs_mwh
        else:
            assert o.price_rs_mwh <= r.price_rs_mwh
    if r.price_rs_mwh is not None:
        assert r.price_rs_mwh == int(r.price_rs_mwh)  # on the Rs 1 tick
