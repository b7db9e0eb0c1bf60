"""Bid validation: every exchange rule has its own typed error naming block and field."""

from __future__ import annotations

from datetime import date

import pydantic
import pytest

from vpp.errors import VppError
from vpp.orchestrator.market import Bid, BidError, BidLimits, Product, Side, Step, validate_bid

DAY = date(2026, 11, 22)


def bid(price: float = 4000.0, mw: float = 1.0, block: int = 5) -> Bid:
    return Bid("b1", Product.DAM, DAY, block, Side.SELL, (Step(price, mw),))


def test_valid_bids_pass_including_band_edges_and_curves() -> None:
    validate_bid(bid(0.0, 0.1))
    validate_bid(bid(10_000.0, 123.4))
    curve = Bid("c", Product.DAM, DAY, 0, Side.BUY, (Step(3000, 1.0), Step(2500, 2.5)))
    validate_bid(curve)
    assert curve.volume_mw == 3.5
    validate_bid(Bid.single("r", Product.RTM, DAY, 21, Side.BUY, 0.5, 100.0, session=10))


@pytest.mark.parametrize(
    ("b", "field", "words"),
    [
        (bid(-1.0), "steps[0].price_rs_mwh", "outside the band"),
        (bid(10_001.0), "steps[0].price_rs_mwh", "outside the band"),
        (bid(float("nan")), "steps[0].price_rs_mwh", "outside the band"),
        (bid(4000.5), "steps[0].price_rs_mwh", "tick"),
        (bid(mw=0.05), "steps[0].volume_mw", "below the minimum"),
        (bid(mw=0.0), "steps[0].volume_mw", "below the minimum"),
        (bid(mw=1.25), "steps[0].volume_mw", "not a multiple of the step"),
        (bid(block=96), "block", "0-95"),
        (bid(block=-1), "block", "0-95"),
    ],
)
def test_each_rule_has_its_error(b: Bid, field: str, words: str) -> None:
    with pytest.raises(BidError, match=words) as e:
        validate_bid(b)
    assert e.value.field == field
    assert isinstance(e.value, VppError) and isinstance(e.value, ValueError)
    if field != "block":
        assert e.value.block == 5
        assert str(e.value).startswith(f"block 5, {field}: ")


def test_curve_rules_name_the_step() -> None:
    two = Bid("c", Product.DAM, DAY, 7, Side.BUY, (Step(3000, 1.0), Step(2500, 0.01)))
    with pytest.raises(BidError) as e:
        validate_bid(two)
    assert (e.value.field, e.value.block) == ("steps[1].volume_mw", 7)
    dup = Bid("c", Product.DAM, DAY, 7, Side.BUY, (Step(3000, 1.0), Step(3000, 2.0)))
    with pytest.raises(BidError, match="same price"):
        validate_bid(dup)
    with pytest.raises(BidError, match="at least one") as e:
        validate_bid(Bid("c", Product.DAM, DAY, 7, Side.BUY, ()))
    assert e.value.field == "steps"


def test_rtm_bid_must_name_the_session_that_delivers_its_block() -> None:
    with pytest.raises(BidError) as e:
        validate_bid(Bid.single("r", Product.RTM, DAY, 21, Side.BUY, 0.5, 100.0))
    assert e.value.field == "session"
    with pytest.raises(BidError, match="does not deliver") as e:
        validate_bid(Bid.single("r", Product.RTM, DAY, 21, Side.BUY, 0.5, 100.0, session=11))
    assert (e.value.field, e.value.block) == ("session", 21)


def test_limits_are_configurable() -> None:
    wide = BidLimits(price_max_rs_mwh=20_000.0, price_tick_rs_mwh=5.0, min_volume_mw=1.0)
    validate_bid(bid(15_000.0, 1.0), wide)
    with pytest.raises(BidError, match="tick"):
        validate_bid(bid(15_001.0, 1.0), wide)
    with pytest.raises(BidError, match="minimum 1 MW"):
        validate_bid(bid(15_000.0, 0.5), wide)
    with pytest.raises(pydantic.ValidationError, match="above price_min"):
        BidLimits(price_min_rs_mwh=500.0, price_max_rs_mwh=400.0)
    with pytest.raises(pydantic.ValidationError):
        BidLimits(volume_step_mw=0.0)
