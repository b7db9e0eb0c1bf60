"""Allocation of the fleet's primary frequency response obligation to its units.

The obligation is the fleet's response at full activation (kW), delivered by droop
``droop_percent`` beyond the deadband. A unit takes part when it is online, its safety
envelope is below Stop, and it has headroom in the direction(s) asked for:

- up (under-frequency, discharge): ``min(rated, max_discharge) - base``;
- down (over-frequency, charge): ``min(rated, max_charge) + base``;
- both: the smaller of the two, so one droop gain serves either direction.

Shares are pro rata to the headroom (``basis="headroom"``) or to the rating
(``basis="rating"``), and never above a unit's headroom: a unit that would exceed it is
capped and the rest is shared again among the others (water-filling). The shares sum
to the obligation, or to the total headroom when that is smaller (``shortfall_kw``).
Each unit's share is its droop ``p_max_kw``; its gain is ``share / (R x nominal)``
kW/Hz, the slope of the core's DroopController with that ``p_max_kw``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vpp.orchestrator.campus.dispatch import allocate as share_out
from vpp.validation import config_error

__all__ = [
    "Allocation",
    "AllocationConfig",
    "UnitAllocation",
    "UnitAvailability",
    "allocate",
]

#: Safety actions (vpp.core.Action labels) that take a unit out of the response.
STOPPED = frozenset({"stop", "emergency_shutdown"})


class UnitAvailability(BaseModel):
    """What one unit can do now (kW; ``base_kw`` is its scheduled setpoint, + = discharge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: str = Field(min_length=1)
    rated_kw: float = Field(gt=0)
    max_discharge_kw: float = Field(ge=0, description="allowed now (safety envelope, SOC)")
    max_charge_kw: float = Field(ge=0, description="allowed now (safety envelope, SOC)")
    base_kw: float = 0.0
    online: bool = True
    safety_action: Literal["none", "log", "reduce", "stop", "emergency_shutdown"] = "none"

    @property
    def headroom_up_kw(self) -> float:
        """Discharge headroom above the base setpoint, kW."""
        return max(0.0, min(self.rated_kw, self.max_discharge_kw) - self.base_kw)

    @property
    def headroom_down_kw(self) -> float:
        """Charge headroom below the base setpoint, kW (positive)."""
        return max(0.0, min(self.rated_kw, self.max_charge_kw) + self.base_kw)


class AllocationConfig(BaseModel):
    """The fleet's obligation and how to share it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    obligation_kw: float = Field(gt=0, description="fleet response at full activation")
    droop_percent: float = Field(default=5.0, gt=0, le=100)
    nominal_hz: float = Field(default=50.0, gt=0)
    basis: Literal["headroom", "rating"] = "headroom"
    direction: Literal["both", "up", "down"] = "both"


@dataclass(frozen=True)
class UnitAllocation:
    """One unit's part: ``share_kw`` (its droop p_max_kw), ``factor`` (share / obligation),
    ``gain_kw_per_hz`` and the headroom it was capped at."""

    unit_id: str
    share_kw: float
    factor: float
    gain_kw_per_hz: float
    headroom_kw: float


@dataclass(frozen=True)
class Allocation:
    """The result: participating units, excluded units with the reason, totals (kW)."""

    obligation_kw: float
    units: list[UnitAllocation]
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def allocated_kw(self) -> float:
        """Sum of the shares, kW."""
        return sum(u.share_kw for u in self.units)

    @property
    def shortfall_kw(self) -> float:
        """Obligation not covered by headroom, kW."""
        return max(0.0, self.obligation_kw - self.allocated_kw)

    @property
    def gain_kw_per_hz(self) -> float:
        """Fleet droop gain, kW/Hz."""
        return sum(u.gain_kw_per_hz for u in self.units)

    def share(self, unit_id: str) -> float:
        """The share of ``unit_id`` (0 when excluded), kW."""
        return next((u.share_kw for u in self.units if u.unit_id == unit_id), 0.0)


def _headroom(unit: UnitAvailability, direction: str) -> float:
    if direction == "up":
        return unit.headroom_up_kw
    if direction == "down":
        return unit.headroom_down_kw
    return min(unit.headroom_up_kw, unit.headroom_down_kw)


def allocate(units: Iterable[UnitAvailability], config: AllocationConfig) -> Allocation:
    """Share ``config.obligation_kw`` among ``units`` (rules in the module docstring)."""
    excluded: dict[str, str] = {}
    caps: dict[str, float] = {}
    weights: dict[str, float] = {}
    order: list[str] = []
    for unit in units:
        uid = unit.unit_id
        if uid in caps or uid in excluded:
            raise config_error(f"unit {uid!r} is listed twice", "unit_id")
        order.append(uid)
        head = _headroom(unit, config.direction)
        if not unit.online:
            excluded[uid] = "offline"
        elif unit.safety_action in STOPPED:
            excluded[uid] = f"safety {unit.safety_action}"
        elif head <= 0:
            excluded[uid] = f"no {config.direction} headroom"
        else:
            caps[uid] = head
            weights[uid] = head if config.basis == "headroom" else unit.rated_kw
    # The campus's proportional dispatch is this very sharing: pro rata to a weight,
    # nobody above its cap, the exact total when the caps allow it.
    ids = [uid for uid in order if weights.get(uid, 0.0) > 0]
    n = len(ids)
    kw = share_out(
        "proportional",
        config.obligation_kw,
        cap=np.array([caps[uid] for uid in ids]),
        rating=np.array([weights[uid] for uid in ids]),
        soc=np.zeros(n),
        energy=np.zeros(n),
        efficiency=np.ones(n),
    )
    shares = {uid: float(v) for uid, v in zip(ids, kw, strict=True)}
    for uid in [k for k, v in shares.items() if not v > 0]:
        # A headroom so small (sub-normal) that its share rounds to nothing.
        excluded[uid] = "negligible headroom"
        del shares[uid]
    slope = config.droop_percent / 100.0 * config.nominal_hz
    out = [
        UnitAllocation(
            uid,
            shares[uid],
            shares[uid] / config.obligation_kw,
            shares[uid] / slope,
            caps[uid],
        )
        for uid in order
        if uid in shares
    ]
    return Allocation(config.obligation_kw, out, excluded)
