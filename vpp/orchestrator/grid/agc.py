"""Automatic generation control (AGC): the operator's set-points turned into a regulation
offset on top of the market schedule, within what the plant reserved and can sustain.

The load despatch centre sends a set-point every ``cycle_s`` (NLDC: 4 s). It is a request
for regulation power (MW, + = more discharge) on top of the schedule. Each step the
:class:`AgcHandler` moves its offset toward that request, never further than:

- the reserved headroom (``reserved_up_mw`` / ``reserved_down_mw``: the accepted reserve
  obligation; the plant promised no more);
- the fleet's headroom beyond the schedule now (its available discharge minus the
  schedule upward, its available charge plus the schedule downward);
- SOC management: the energy between the SOC and the edge of the recoverable band
  (``soc_min_pct`` - ``soc_max_pct``) must last ``soc_horizon_s`` at the schedule plus
  the offset, so the offset fades as the SOC nears the band's edge and never pushes it
  across (within a step no longer than the horizon);
- the ramp (``ramp_mw_per_min``).

The headroom and SOC limits are hard: when they shrink faster than the ramp (a unit
trips, the schedule steps) the offset is cut to them at once, toward zero, which is the
safe side for the plant. Every other change, including the decay of a stale set-point
(none for ``timeout_s``) to zero, moves at most at the ramp. Each step reports why the
offset differs from the request: ``following``, ``limited_by_headroom``,
``limited_by_ramp``, ``limited_by_soc`` or ``stale``.

Pure: no I/O, no clock; the caller passes the times (UNIX s). The SRAS figures are
defaults from the CERC Ancillary Services Regulations 2022 (draft figures): check them
against the current regulation; all are configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.errors import VppError

__all__ = ["AgcConfig", "AgcHandler", "AgcInputError", "AgcStatus", "AgcStep", "FleetState"]

#: Why the offset is what it is (in this order of precedence).
AgcStatus = Literal[
    "stale", "limited_by_soc", "limited_by_headroom", "limited_by_ramp", "following"
]

#: Slack for float comparisons of MW figures (1 W).
EPS_MW = 1e-6


class AgcInputError(VppError, ValueError):
    """A set-point the handler refuses (not finite)."""


class AgcConfig(BaseModel):
    """AGC and secondary reserve (SRAS) settings; figures marked "check" are defaults to
    check against the current regulation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycle_s: float = Field(
        default=4.0, gt=0, le=3600,
        description="set-point interval of the load despatch centre, s (NLDC: 4; check)",
    )  # fmt: skip
    reserved_up_mw: float = Field(
        default=0.0, ge=0, description="regulation up (more discharge) reserved, MW"
    )
    reserved_down_mw: float = Field(
        default=0.0, ge=0, description="regulation down (more charge) reserved, MW"
    )
    ramp_mw_per_min: float = Field(
        default=1.0, gt=0, description="fastest change of the regulation offset, MW/min"
    )
    soc_min_pct: float = Field(
        default=20.0, ge=0, le=100, description="bottom of the SOC band kept recoverable, %"
    )
    soc_max_pct: float = Field(
        default=80.0, ge=0, le=100, description="top of the SOC band kept recoverable, %"
    )
    soc_horizon_s: float = Field(
        default=1800.0, ge=60, le=86400,
        description="the energy left in the SOC band must last this long at the offset, s",
    )  # fmt: skip
    timeout_s: float = Field(
        default=20.0, gt=0, le=3600,
        description="a set-point older than this is stale: the offset decays to 0",
    )  # fmt: skip
    start_s: float = Field(
        default=30.0, gt=0,
        description="SRAS: the response must start within this, s (check)",
    )  # fmt: skip
    full_s: float = Field(
        default=900.0, gt=0,
        description="SRAS: the full response within this, s (check)",
    )  # fmt: skip
    sustain_s: float = Field(
        default=1800.0, gt=0,
        description="SRAS: the full response held this long, s (check)",
    )  # fmt: skip
    start_fraction: float = Field(
        default=0.1, gt=0, lt=1,
        description="the response has started once it covers this fraction of a step",
    )  # fmt: skip
    tolerance_pct: float = Field(
        default=5.0, gt=0, le=100,
        description="within tolerance: |delivered - requested| <= this % of the reserve",
    )  # fmt: skip
    min_energy_pct: float = Field(
        default=90.0, ge=0, le=200,
        description="a service period needs this % of the requested energy (check)",
    )  # fmt: skip
    min_within_pct: float = Field(
        default=90.0, ge=0, le=100,
        description="a service period needs this % of its time within tolerance (check)",
    )  # fmt: skip
    period_s: float = Field(
        default=900.0, gt=0, le=86400,
        description="the service period reported (15-minute blocks, aligned to the clock)",
    )  # fmt: skip
    max_samples: int = Field(
        default=20_000, ge=10, le=10_000_000, description="performance samples kept"
    )
    max_signals: int = Field(default=100, ge=1, le=100_000, description="signals kept")

    @model_validator(mode="after")
    def _band(self) -> AgcConfig:
        if self.soc_min_pct >= self.soc_max_pct:
            raise ValueError("soc_min_pct must be below soc_max_pct")
        return self

    @property
    def tolerance_mw(self) -> float:
        """The tolerance of the performance checks, MW (1 kW when nothing is reserved)."""
        reserve = max(self.reserved_up_mw, self.reserved_down_mw)
        return max(self.tolerance_pct / 100.0 * reserve, 1e-3)

    def obligation(self, setpoint_mw: float) -> float:
        """What the plant owes for ``setpoint_mw``: the set-point within the reserve."""
        return min(max(setpoint_mw, -self.reserved_down_mw), self.reserved_up_mw)


@dataclass(frozen=True)
class FleetState:
    """What the handler needs of the fleet now (MW, + = discharge).

    ``up_mw`` / ``down_mw`` are the discharge and charge (magnitudes) the fleet can reach
    now; ``soc_pct`` and ``energy_mwh`` the SOC and energy of the units reporting one
    (NaN or 0 when none does: no energy, so no offset); ``schedule_mw`` the power the
    offset is added to.
    """

    up_mw: float
    down_mw: float
    soc_pct: float
    energy_mwh: float
    schedule_mw: float


@dataclass(frozen=True)
class AgcStep:
    """The outcome of one :meth:`AgcHandler.step`."""

    t: float
    offset_mw: float
    """The regulation offset to add to the schedule."""
    status: AgcStatus
    setpoint_mw: float | None
    """The operator's set-point in force (None: none yet, or stale)."""
    requested_mw: float
    """What the plant owes: the set-point within the reserve (0 when stale)."""
    low_mw: float
    """The lowest offset the limits allowed this step (<= 0)."""
    high_mw: float
    """The highest offset the limits allowed this step (>= 0)."""


def _finite(x: float, default: float) -> float:
    return x if math.isfinite(x) else default


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


class AgcHandler:
    """The regulation offset from the operator's set-points (see the module docstring)."""

    def __init__(self, config: AgcConfig | None = None) -> None:
        self.config = config or AgcConfig()
        self.offset_mw = 0.0
        self.last: AgcStep | None = None
        self._setpoint: float | None = None
        self._setpoint_t = -math.inf
        self._t: float | None = None

    @property
    def active(self) -> bool:
        """Whether a set-point ever came (before that, nothing to report)."""
        return self._setpoint is not None

    def setpoint(self, t: float, mw: float) -> None:
        """The operator's set-point ``mw`` (MW, + = more discharge), received at ``t``."""
        if not (math.isfinite(mw) and math.isfinite(t)):
            raise AgcInputError(f"AGC set-point {mw!r} at {t!r}: not finite")
        self._setpoint, self._setpoint_t = mw, t

    def soc_limits(self, fleet: FleetState) -> tuple[float, float]:
        """The offsets (low <= 0 <= high) at which the energy left in the SOC band lasts
        ``soc_horizon_s`` at the schedule plus the offset."""
        cfg = self.config
        soc, energy = fleet.soc_pct, fleet.energy_mwh
        if not (math.isfinite(soc) and math.isfinite(energy) and energy > 0):
            return 0.0, 0.0  # no SOC known: no energy the offset may spend
        hours = cfg.soc_horizon_s / 3600.0
        above = max(0.0, soc - cfg.soc_min_pct) / 100.0 * energy
        below = max(0.0, cfg.soc_max_pct - soc) / 100.0 * energy
        sched = _finite(fleet.schedule_mw, 0.0)
        return -max(0.0, below / hours + sched), max(0.0, above / hours - sched)

    def step(self, t: float, fleet: FleetState) -> AgcStep:
        """The offset at ``t`` for ``fleet`` (see the module docstring)."""
        cfg = self.config
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        # A clock that went back is not taken as time to ramp in.
        self._t = t if self._t is None else max(self._t, t)
        stale = self._setpoint is None or t - self._setpoint_t > cfg.timeout_s
        want = 0.0 if stale or self._setpoint is None else self._setpoint
        sched = _finite(fleet.schedule_mw, 0.0)
        # Unknown availability counts as none: the offset never bets on it.
        head_hi = min(cfg.reserved_up_mw, max(0.0, _finite(fleet.up_mw, 0.0) - sched))
        head_lo = -min(cfg.reserved_down_mw, max(0.0, _finite(fleet.down_mw, 0.0) + sched))
        soc_lo, soc_hi = self.soc_limits(fleet)
        lo, hi = max(head_lo, soc_lo), min(head_hi, soc_hi)
        target = _clamp(want, lo, hi)
        room = cfg.ramp_mw_per_min / 60.0 * dt
        ramped = self.offset_mw + _clamp(target - self.offset_mw, -room, room)
        # The limits are hard (0 is always within them, so this only cuts toward zero).
        new = _clamp(ramped, lo, hi)
        status: AgcStatus
        if stale:
            status = "stale"
        elif want > hi + EPS_MW:
            status = "limited_by_soc" if soc_hi < head_hi else "limited_by_headroom"
        elif want < lo - EPS_MW:
            status = "limited_by_soc" if soc_lo > head_lo else "limited_by_headroom"
        elif abs(new - target) > EPS_MW:
            status = "limited_by_ramp"
        else:
            status = "following"
        self.offset_mw = new
        requested = 0.0 if stale else cfg.obligation(want)
        self.last = AgcStep(t, new, status, None if stale else want, requested, lo, hi)
        return self.last
