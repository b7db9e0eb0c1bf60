"""Schedule to bids, through the simulated exchange, back to a base schedule in kW."""

from __future__ import annotations

from datetime import date

import pytest

from vpp.orchestrator.market import (
    Award,
    BatteryParams,
    BidError,
    BidLimits,
    Product,
    Schedule,
    Side,
    base_schedule,
    block_start,
    check_schedule,
    optimise,
    round_schedule,
    to_bids,
    validate_bid,
)
from vpp.sim.exchange import SimExchange, SyntheticMarket

DAY = date(2026, 11, 22)
BATTERY = BatteryParams(
    p_charge_max_mw=5.0, p_discharge_max_mw=5.0, soc_min_mwh=1.0, soc_max_mwh=10.0,
    soc_initial_mwh=5.0, soc_final_mwh=5.0, degradation_rs_mwh=100.0, reserve_mw=1.0,
    reserve_duration_h=0.25,
)  # fmt: skip


def forecast() -> list[float]:
    m = SyntheticMarket(seed=3)
    return [round(m.reference_price(b)) for b in range(96)]


def test_bids_follow_the_rounded_schedule() -> None:
    s = round_schedule(optimise(forecast(), BATTERY), BATTERY)
    bids = to_bids(s, DAY)
    active = [i for i, p in enumerate(s.net_mw) if p != 0.0]
    assert [b.block for b in bids] == active and active
    for b in bids:
        validate_bid(b)
        p = s.net_mw[b.block]
        assert b.side is (Side.SELL if p > 0 else Side.BUY)
        assert b.volume_mw == pytest.approx(abs(p))
        assert b.steps[0].price_rs_mwh == (0.0 if p > 0 else 10_000.0)  # price taker
    limited = to_bids(s, DAY, price_taker=False)
    assert [b.steps[0].price_rs_mwh for b in limited] == [forecast()[i] for i in active]
    rtm = to_bids(s, DAY, product=Product.RTM)
    assert all(b.session == b.block // 2 for b in rtm)
    for b in rtm:
        validate_bid(b)


def test_accepted_schedule_becomes_the_base_schedule_in_kw() -> None:
    s = round_schedule(optimise(forecast(), BATTERY), BATTERY)
    ex = SimExchange(market=SyntheticMarket(seed=3))
    for b in to_bids(s, DAY):
        ex.submit(b)
    res = ex.clear(Product.DAM, DAY)
    # Price-taking bids of a few MW in a market of thousands are accepted in full.
    assert all(a.accepted_mw == pytest.approx(abs(s.net_mw[a.block])) for a in res.awards.values())
    base = base_schedule(res.awards.values(), DAY)
    assert base.kw == pytest.approx(tuple(1000.0 * p for p in s.net_mw))
    t0 = block_start(DAY, 0)
    assert base.start == t0
    i = next(i for i, p in enumerate(s.net_mw) if p != 0.0)
    assert base.at(t0 + 900 * i) == pytest.approx(1000.0 * s.net_mw[i])
    assert base.at(t0 + 900 * i + 899.9) == pytest.approx(1000.0 * s.net_mw[i])
    assert base.at(t0 - 1) == 0.0 and base.at(t0 + 86_400) == 0.0
    # What cleared is what the LP expected to earn at the real clearing prices.
    earned = sum(0.25 * (1 if a.side is Side.SELL else -1) * a.accepted_mw * (a.price_rs_mwh or 0)
                 for a in res.awards.values())  # fmt: skip
    assert earned > 0


def test_base_schedule_sums_partial_awards_with_our_sign() -> None:
    awards = [
        Award("a", Product.DAM, DAY, 4, Side.SELL, 1.5, 5000.0),
        Award("b", Product.DAM, DAY, 4, Side.BUY, 0.4, 5000.0),
        Award("c", Product.DAM, DAY, 7, Side.BUY, 2.25, 3000.0),
        Award("d", Product.DAM, date(2026, 11, 23), 7, Side.SELL, 9.0, 3000.0),
    ]
    kw = base_schedule(awards, DAY).kw
    assert kw[4] == pytest.approx(1100.0) and kw[7] == pytest.approx(-2250.0)
    assert sum(abs(x) for x in kw) == pytest.approx(3350.0)


def test_rounding_keeps_the_final_soc() -> None:
    # An LP result of 0.26 MW per block rounds to 0.3 or 0.2; the final SOC must still hold.
    b = BatteryParams(p_charge_max_mw=1, p_discharge_max_mw=1, soc_max_mwh=1,
                      soc_initial_mwh=0.0, soc_final_mwh=0.26, eta_charge=1,
                      eta_discharge=1)  # fmt: skip
    lp = Schedule((-0.26,) * 4, (0.0, 0.065, 0.13, 0.195, 0.26), (100.0,) * 4, 0.0)
    r = round_schedule(lp, b)
    assert r.soc_mwh[-1] >= 0.26 - 1e-9
    assert sum(r.net_mw) == pytest.approx(-1.1)
    assert check_schedule(r.net_mw, b) == []
    assert check_schedule((2.0, 0.0, 0.0, 0.0), b)[0].startswith("block 0: 2 MW beyond")
    # What the grid cannot meet is reported, not raised: see test_market_rounding.py.


def test_coarser_exchange_steps_round_onto_their_grid() -> None:
    lim = BidLimits(volume_step_mw=0.5, min_volume_mw=1.0)
    s = round_schedule(optimise(forecast(), BATTERY), BATTERY, lim)
    assert all(p == 0.0 or (abs(p) >= 1.0 and (p * 2) == round(p * 2)) for p in s.net_mw)
    assert check_schedule(s.net_mw, BATTERY) == []
    for b in to_bids(s, DAY, limits=lim):
        validate_bid(b, lim)


def test_an_rtm_session_from_optimiser_to_base_schedule() -> None:
    # Session 10 (05:00-05:30 IST): buy cheap in block 20, sell dear in block 21. Selling
    # 2 MW for 0.25 h takes 0.5 MWh; 0.2 are stored, so 1.2 MW are bought for 0.25 h.
    b = BatteryParams(p_charge_max_mw=2, p_discharge_max_mw=2, soc_max_mwh=1,
                      soc_initial_mwh=0.2, eta_charge=1, eta_discharge=1)  # fmt: skip
    s = round_schedule(optimise([1000.0, 6000.0], b, first_block=20), b)
    assert s.net_mw == pytest.approx((-1.2, 2.0)) and s.first_block == 20
    bids = to_bids(s, DAY, product=Product.RTM)
    assert [(x.block, x.session, x.side) for x in bids] == [(20, 10, Side.BUY), (21, 10, Side.SELL)]
    ex = SimExchange(market=SyntheticMarket(seed=1))
    window_open = block_start(DAY, 20) - 3600 - 60
    for x in bids:
        ex.submit(x, now=window_open)
    with pytest.raises(BidError, match="session"):
        ex.clear(Product.RTM, DAY)
    res = ex.clear(Product.RTM, DAY, 10)
    kw = base_schedule(res.awards.values(), DAY).kw
    assert (kw[20], kw[21]) == pytest.approx((-1200.0, 2000.0))
    assert sum(abs(x) for x in kw) == pytest.approx(3200.0)
