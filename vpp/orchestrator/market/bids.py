"""Bids for the exchange and their validation against its rules.

A :class:`Bid` is one side (buy or sell) for one 15-minute block of one product and
delivery day, as a curve of one or more :class:`Step` price-quantity pairs. Each step is
a limit order of its own: a sell step offers its volume at its price or more, a buy step
asks for its volume at its price or less. A single-price bid is a curve of one step.

Volumes are MW (the exchange's unit; energy per block = MW x 0.25 h), prices Rs/MWh.
:func:`validate_bid` checks every rule of :class:`BidLimits` and raises a
:class:`~vpp.orchestrator.market.errors.BidError` naming the block and field at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.orchestrator.market.errors import BidError
from vpp.orchestrator.market.products import BLOCKS_PER_DAY, Product, session_of_block

__all__ = ["Bid", "BidLimits", "Side", "Step", "on_grid", "snap", "validate_bid"]

# Float slack when checking "a multiple of the step": 1e-6 of a step is far below any
# volume or price that matters, and well above the rounding of decimal inputs.
_GRID_TOL = 1e-6


class Side(str, Enum):
    """Buy (we charge, taking energy) or sell (we discharge, delivering energy)."""

    BUY = "buy"
    SELL = "sell"


class BidLimits(BaseModel):
    """The exchange's bid rules (defaults: IEX, Rs 0-10 per kWh; check the current order)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price_min_rs_mwh: float = Field(default=0.0, ge=0.0)
    price_max_rs_mwh: float = Field(default=10_000.0, gt=0.0)
    min_volume_mw: float = Field(default=0.1, gt=0.0)
    volume_step_mw: float = Field(default=0.1, gt=0.0)
    price_tick_rs_mwh: float = Field(default=1.0, gt=0.0)

    @model_validator(mode="after")
    def _band(self) -> BidLimits:
        if self.price_max_rs_mwh <= self.price_min_rs_mwh:
            raise ValueError("price_max_rs_mwh must be above price_min_rs_mwh")
        return self


@dataclass(frozen=True)
class Step:
    """One price-quantity pair of a bid curve."""

    price_rs_mwh: float
    volume_mw: float


@dataclass(frozen=True)
class Bid:
    """One side of one block: a curve of steps (see the module docstring)."""

    bid_id: str
    product: Product
    delivery: date
    block: int
    side: Side
    steps: tuple[Step, ...]
    session: int | None = None
    participant: str = "vpp"

    @classmethod
    def single(
        cls,
        bid_id: str,
        product: Product,
        delivery: date,
        block: int,
        side: Side,
        volume_mw: float,
        price_rs_mwh: float,
        *,
        session: int | None = None,
        participant: str = "vpp",
    ) -> Bid:
        """A bid of one step."""
        step = (Step(price_rs_mwh, volume_mw),)
        return cls(bid_id, product, delivery, block, side, step, session, participant)

    @property
    def volume_mw(self) -> float:
        """The volume of all steps together."""
        return sum(s.volume_mw for s in self.steps)


def on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is a whole multiple of ``step`` (within float slack)."""
    q = value / step
    return abs(q - round(q)) <= _GRID_TOL


def snap(value: float, step: float) -> float:
    """``value`` rounded to the nearest multiple of ``step``, free of float noise."""
    digits = max(0, -math.floor(math.log10(step)) + 6)
    return round(round(value / step) * step, digits)


def validate_bid(bid: Bid, limits: BidLimits | None = None) -> None:
    """Check ``bid`` against the exchange rules; raise :class:`BidError` on the first breach."""
    lim = limits or BidLimits()
    b = bid.block
    if not 0 <= b < BLOCKS_PER_DAY:
        raise BidError(f"must be 0-{BLOCKS_PER_DAY - 1}, got {b}", field="block")
    if bid.product is Product.RTM:
        if bid.session is None:
            raise BidError("an RTM bid needs its session", field="session", block=b)
        if session_of_block(b) != bid.session:
            raise BidError(f"session {bid.session} does not deliver this block", field="session",
                           block=b)  # fmt: skip
    if not bid.steps:
        raise BidError("a bid needs at least one price-quantity step", field="steps", block=b)
    for i, s in enumerate(bid.steps):
        where = f"steps[{i}]"
        if not math.isfinite(s.price_rs_mwh) or not (
            lim.price_min_rs_mwh <= s.price_rs_mwh <= lim.price_max_rs_mwh
        ):
            raise BidError(
                f"price Rs {s.price_rs_mwh}/MWh outside the band Rs {lim.price_min_rs_mwh:g}-"
                f"{lim.price_max_rs_mwh:g}/MWh",
                field=f"{where}.price_rs_mwh", block=b,
            )  # fmt: skip
        if not on_grid(s.price_rs_mwh, lim.price_tick_rs_mwh):
            raise BidError(
                f"price Rs {s.price_rs_mwh}/MWh is not a multiple of the tick "
                f"Rs {lim.price_tick_rs_mwh:g}/MWh",
                field=f"{where}.price_rs_mwh", block=b,
            )  # fmt: skip
        if not math.isfinite(s.volume_mw) or s.volume_mw < lim.min_volume_mw - _GRID_TOL:
            raise BidError(
                f"volume {s.volume_mw} MW below the minimum {lim.min_volume_mw:g} MW",
                field=f"{where}.volume_mw", block=b,
            )  # fmt: skip
        if not on_grid(s.volume_mw, lim.volume_step_mw):
            raise BidError(
                f"volume {s.volume_mw} MW is not a multiple of the step {lim.volume_step_mw:g} MW",
                field=f"{where}.volume_mw", block=b,
            )  # fmt: skip
    prices = [s.price_rs_mwh for s in bid.steps]
    if len(set(prices)) != len(prices):
        raise BidError("two steps of one curve at the same price", field="steps", block=b)
