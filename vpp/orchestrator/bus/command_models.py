"""The parameters of every command of the bus: one pydantic model per command, used by
whoever sends the command and by the process that receives it (:data:`COMMANDS` lists
them by server kind; :func:`check_command` is what both sides call).

Each model checks what can be checked without the unit at hand: types (a number is an
int or a float, never a bool or a string), finiteness (no NaN or infinity anywhere),
signs, and the schedule's shape. What depends on the unit or on the time (a power within
its rating, a schedule starting near now) is checked by the handler against the unit's
configuration and its :class:`~vpp.orchestrator.field.config.CommandLimits`, before
anything changes: a refused command
leaves the previous state in force.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from vpp.config.commands import CommandLimits
from vpp.config.field import DroopSettings
from vpp.errors import CommandError
from vpp.orchestrator.campus.config import Strategy
from vpp.validation import first_error

__all__ = [
    "COMMANDS",
    "Agc",
    "CampusFleet",
    "CampusSchedule",
    "Control",
    "GridEvents",
    "Level",
    "MarketBids",
    "MarketResults",
    "MarketRun",
    "SafetyHistory",
    "SetBase",
    "SetDroop",
    "SetParticipation",
    "SetSchedule",
    "SetTarget",
    "Status",
    "check_command",
    "check_power",
    "check_schedule",
    "parse",
]

#: Levels of the location hierarchy the campus aggregates by.
Level = Literal["country", "state", "city", "campus", "building", "node"]

#: A finite number (an int is taken as a float; a bool or a string is not a number).
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _UnitParams(_Params):
    unit: str = Field(min_length=1, max_length=200)


class SetBase(_UnitParams):
    """``set_base`` / ``set_power``: the unit's base power, kW (+ = discharge); ends a
    schedule."""

    kw: Number


class SetSchedule(_UnitParams):
    """``set_schedule``: base power by block, ``base_kw[i]`` from ``start + i * block_s``
    (UNIX s); outside it the set base power applies."""

    start: Number
    block_s: Number = Field(gt=0)
    base_kw: tuple[Number, ...] = Field(min_length=1)


class SetParticipation(_UnitParams):
    """``set_participation``: the droop's full-response kW (0 = out of the service)."""

    p_max_kw: Number = Field(ge=0)


class SetDroop(_UnitParams, DroopSettings):
    """``set_droop``: new droop settings for the unit (the configuration's fields; those
    not given keep their configured defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Control(_UnitParams):
    """``control``: enable, disable, reset_alarms or emergency_stop."""

    action: Literal["enable", "disable", "reset_alarms", "emergency_stop"]


class SafetyHistory(_Params):
    """``safety_history``: the last ``limit`` violations (of one unit, or all)."""

    unit: str | None = None
    limit: int = Field(default=100, ge=0, le=100_000, strict=True)


class Status(_Params):
    """``status``: no parameters."""


class SetTarget(_Params):
    """Campus ``set_target``: the campus target, kW (+ = discharge); None clears it."""

    kw: Number | None
    strategy: Strategy | None = None


class CampusSchedule(_Params):
    """Campus ``set_schedule``: the target per block, ``kw[i]`` from ``start + i *
    block_s`` (a market sends one per delivery day)."""

    start: Number
    block_s: Number = Field(default=900.0, gt=0)
    kw: tuple[Number, ...] = Field(min_length=1)

    @property
    def end(self) -> float:
        """When the last block ends (UNIX s)."""
        return self.start + self.block_s * len(self.kw)


class Agc(_Params):
    """Campus ``agc``: the load despatch centre's AGC set-point, MW on top of the schedule
    (+ = more discharge); within the site's rating (the reserve limits what is followed,
    see docs/agc.md)."""

    mw: Number


class CampusFleet(_Params):
    """Campus ``fleet``: the fleet's totals at these levels of the location hierarchy."""

    levels: tuple[Level, ...] = get_args(Level)


class GridEvents(_Params):
    """Grid ``events``: the last ``limit`` frequency events with their compliance."""

    limit: int = Field(default=20, ge=1, le=1000, strict=True)


class MarketRun(_Params):
    """Market ``run``: bid, clear and schedule the next delivery now; no parameters."""


class MarketBids(_Params):
    """Market ``bids``: the bids of the last day-ahead run and of the last RTM session."""


class MarketResults(_Params):
    """Market ``results``: what the exchange awarded the last day-ahead run's bids, and
    each block's clearing price."""


#: The model of each command, by the kind of server that takes it.
COMMANDS: dict[str, dict[str, type[_Params]]] = {
    "field": {
        "set_base": SetBase,
        "set_power": SetBase,
        "set_schedule": SetSchedule,
        "set_participation": SetParticipation,
        "set_droop": SetDroop,
        "control": Control,
        "safety_history": SafetyHistory,
        "status": Status,
    },
    "campus": {"set_target": SetTarget, "set_schedule": CampusSchedule, "fleet": CampusFleet,
               "agc": Agc},
    "grid": {"status": Status, "events": GridEvents},
    "market": {"status": Status, "run": MarketRun, "bids": MarketBids,
               "results": MarketResults},
}

P = TypeVar("P", bound=pydantic.BaseModel)


def check_command(kind: str, name: str, params: Mapping[str, Any], where: str) -> _Params:
    """``params`` of command ``name`` for a server of ``kind``, validated; a CommandError
    for an unknown command or an invalid parameter (what a sender checks before sending,
    and a server before authorising: a refusal names the parameter)."""
    model = COMMANDS.get(kind, {}).get(name)
    if model is None:
        known = sorted(COMMANDS.get(kind, {}))
        raise CommandError(f"unknown command {name!r} for a {kind} server; known: {known}",
                           field="name", where=where)  # fmt: skip
    return parse(model, params, where)


def parse(model: type[P], params: Mapping[str, Any], where: str) -> P:
    """``params`` validated as ``model``, or a CommandError naming the parameter."""
    try:
        return model.model_validate(dict(params))
    except pydantic.ValidationError as exc:
        field, msg = first_error(exc)
        name = field or "params"
        raise CommandError(f"{name}: {msg}", field=name, where=where) from None


def check_power(kw: float, rating_kw: float, name: str, where: str) -> None:
    """``kw`` within +-``rating_kw``, or a CommandError."""
    if not abs(kw) <= rating_kw:
        raise CommandError(f"{name} {kw:g} beyond the rating +-{rating_kw:g}", field=name,
                           where=where)  # fmt: skip


def check_schedule(
    start: float,
    block_s: float,
    values: Sequence[float],
    *,
    limits: CommandLimits,
    rating_kw: float,
    now: float,
    where: str,
    name: str = "base_kw",
) -> float:
    """A schedule that makes sense at ``now``: blocks within the limits' lengths and count,
    a start near now, not over yet, every value within the rating. Returns its end."""
    lim, n = limits, len(values)
    if not lim.schedule_block_min_s <= block_s <= lim.schedule_block_max_s:
        raise CommandError(
            f"block_s must be within [{lim.schedule_block_min_s:g}, "
            f"{lim.schedule_block_max_s:g}] s, got {block_s:g}",
            field="block_s",
            where=where,
        )
    if n > lim.schedule_max_blocks:
        raise CommandError(f"{n} blocks, at most {lim.schedule_max_blocks}", field=name,
                           where=where)  # fmt: skip
    if not now - lim.schedule_max_age_s <= start <= now + lim.schedule_max_lead_s:
        raise CommandError(
            f"start {start:.0f} is not near now ({now:.0f}): at most "
            f"{lim.schedule_max_age_s:g} s before or {lim.schedule_max_lead_s:g} s after",
            field="start",
            where=where,
        )
    end = start + block_s * n
    if end <= now:
        raise CommandError(f"the schedule ended at {end:.0f}", field="start", where=where)
    for kw in values:
        check_power(kw, rating_kw, name, where)
    return end
