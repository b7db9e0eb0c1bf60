"""The parameters of the field controller's commands: one pydantic model per command,
used by whoever sends the command and by the controller that receives it.

Each model checks what can be checked without the unit at hand: types (a number is an
int or a float, never a bool or a string), finiteness (no NaN or infinity anywhere),
signs, and the schedule's shape. What depends on the unit or on the time (a power within
its rating, a schedule starting near now) is checked by the handler against the unit's
configuration and its :class:`~vpp.orchestrator.field.config.CommandLimits`, before
anything changes: a refused command
leaves the previous state in force.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from vpp.config.models import DroopSettings

__all__ = [
    "FIELD_COMMANDS",
    "Control",
    "SafetyHistory",
    "SetBase",
    "SetDroop",
    "SetParticipation",
    "SetSchedule",
    "Status",
]

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


#: The model of each field controller command.
FIELD_COMMANDS: dict[str, type[_Params]] = {
    "set_base": SetBase,
    "set_power": SetBase,
    "set_schedule": SetSchedule,
    "set_participation": SetParticipation,
    "set_droop": SetDroop,
    "control": Control,
    "safety_history": SafetyHistory,
    "status": Status,
}
