"""The commands of a field controller (the handlers of its command server).

=====================  ====================================================================
command                params -> result
=====================  ====================================================================
set_base               {unit, kw}: dispatch base power (kW, + = discharge); ends a schedule
set_schedule           {unit, start, block_s, base_kw: [...]}: base power by time block
set_participation      {unit, p_max_kw}: the droop's full-response kW (0 = out)
set_droop              {unit, droop_percent?, deadband_low_hz?, deadband_high_hz?,
                       ramp_kw_per_s?, inertia_kw_per_hz_s?}: new droop settings
set_power              {unit, kw}: operator manual base power (as set_base)
control                {unit, action}: enable, disable, reset_alarms, emergency_stop
safety_history         {unit?, limit?} -> [{time, unit, code, action, detail, ...}]
status                 {} -> {unit: {online, soc, power, base, setpoint, safety, ...}}
=====================  ====================================================================

Every command's parameters are validated first, by its model in
:mod:`vpp.orchestrator.bus.command_models` (types, finite numbers, shapes) and then
against the unit (powers within its rating) and the field's
:class:`~vpp.orchestrator.field.config.CommandLimits` (schedule blocks, counts, start near
now). Only then does anything change: a refused command leaves the previous state in
force. A bad parameter fails with ValidationError naming it; a command to a unit whose
inverter is offline fails with DeviceOfflineError (both become a not-ok ack with the
reason). Every command, done or refused, is published as an event of kind ``command``.
New settings reach the unit's pipeline in place, so its setpoint moves on within the
ramp (docs/pipeline.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pydantic

from vpp.config.models import DroopSettings
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import DeviceOfflineError, DriverError, ValidationError
from vpp.errors import VppError
from vpp.orchestrator.bus import command_models as cm
from vpp.orchestrator.field.config import CommandLimits
from vpp.orchestrator.field.unit import FieldUnit, Schedule
from vpp.orchestrator.field.writer import SetpointWriter

__all__ = ["ACTIONS", "FieldCommands"]

ACTIONS = ("enable", "disable", "reset_alarms", "emergency_stop")

Params = Mapping[str, Any]
P = TypeVar("P", bound=pydantic.BaseModel)


def parse(model: type[P], params: Params, where: str) -> P:
    """``params`` validated as ``model``, or a ValidationError naming the parameter."""
    try:
        return model.model_validate(dict(params))
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "params"
        raise ValidationError(f"{name}: {first['msg']}", resource=where, point=name) from None


class FieldCommands:
    """Command handlers over the controller's units, communicators and writers."""

    id: str
    units: dict[str, FieldUnit]
    comms: dict[str, ResourceCommunicator]
    writers: dict[str, SetpointWriter]
    limits: CommandLimits

    def command_table(self) -> dict[str, Callable[[Params], Awaitable[Any]]]:
        """Handlers by command name (each takes the command's params)."""
        return {
            "set_base": self._set_base,
            "set_power": self._set_base,
            "set_schedule": self._set_schedule,
            "set_participation": self._set_participation,
            "set_droop": self._set_droop,
            "control": self._control,
            "safety_history": self._safety_history,
            "status": self._status,
        }

    def _unit(self, uid: str | None, *, online: bool = True) -> FieldUnit:
        unit = self.units.get(uid) if isinstance(uid, str) else None
        if unit is None:
            raise ValidationError(f"no unit {uid!r}; known: {sorted(self.units)}", resource=self.id)
        if online and unit.online is False:
            err = self.comms[unit.id].status()[unit.id]["last_error"] or "no answer"
            raise DeviceOfflineError(f"inverter offline ({err}); command refused", resource=unit.id)
        return unit

    def _within_rating(self, unit: FieldUnit, kw: float, what: str) -> None:
        rated = unit.cfg.rated_power_kw
        if abs(kw) > rated:
            raise ValidationError(f"{what} {kw:g} beyond the rating +-{rated:g}", resource=unit.id)

    async def _set_base(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetBase, params, self.id)
        unit = self._unit(p.unit)
        self._within_rating(unit, p.kw, "kw")
        unit.set_base(p.kw)
        return {"unit": unit.id, "base_kw": p.kw}

    async def _set_schedule(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetSchedule, params, self.id)
        unit = self._unit(p.unit)
        lim, n = self.limits, len(p.base_kw)
        if not lim.schedule_block_min_s <= p.block_s <= lim.schedule_block_max_s:
            raise ValidationError(
                f"block_s must be within [{lim.schedule_block_min_s:g}, "
                f"{lim.schedule_block_max_s:g}] s, got {p.block_s:g}",
                resource=unit.id,
                point="block_s",
            )
        if n > lim.schedule_max_blocks:
            raise ValidationError(
                f"{n} blocks, at most {lim.schedule_max_blocks}", resource=unit.id, point="base_kw"
            )
        now = time.time()
        if not now - lim.schedule_max_age_s <= p.start <= now + lim.schedule_max_lead_s:
            raise ValidationError(
                f"start {p.start:.0f} is not near now ({now:.0f}): at most "
                f"{lim.schedule_max_age_s:g} s before or {lim.schedule_max_lead_s:g} s after",
                resource=unit.id,
                point="start",
            )
        end = p.start + p.block_s * n
        if end <= now:
            raise ValidationError(
                f"the schedule ended at {end:.0f}", resource=unit.id, point="start"
            )
        for kw in p.base_kw:
            self._within_rating(unit, kw, "base_kw")
        unit.set_schedule(Schedule(p.start, p.block_s, p.base_kw))
        return {"unit": unit.id, "blocks": n, "end": end}

    async def _set_participation(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetParticipation, params, self.id)
        unit = self._unit(p.unit)
        unit.set_participation(p.p_max_kw)
        return {"unit": unit.id, "p_max_kw": unit.participation_kw}

    async def _set_droop(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetDroop, params, self.id)
        unit = self._unit(p.unit)
        settings = DroopSettings.model_validate(p.model_dump(exclude={"unit"}))
        try:
            unit.set_droop(settings)
        except VppError as exc:  # the core's own check (a ConfigError naming the field)
            raise ValidationError(f"droop settings refused: {exc}", resource=unit.id) from None
        return {"unit": unit.id, **settings.model_dump()}

    async def _control(self, params: Params) -> dict[str, Any]:
        p = parse(cm.Control, params, self.id)
        unit = self._unit(p.unit)
        action = p.action
        comm, writer = self.comms[unit.id], self.writers[unit.id]
        result: dict[str, Any] = {"unit": unit.id, "action": action}
        if action == "emergency_stop":
            # Stop writing first, so no queued setpoint lands after the stop.
            unit.enabled = False
            writer.drop()
            ack = await comm.send_command(unit.id, "emergency_stop", None, writer.timeout_s)
        elif action == "disable":
            unit.enabled = False
            writer.drop()
            ack = await comm.send_command(unit.id, "disable", None, writer.timeout_s)
        elif action == "enable":
            ack = await comm.send_command(unit.id, "enable", None, writer.timeout_s)
            if ack.ok:
                mode = {"mode": "power_control"}
                ack = await comm.send_command(unit.id, "set_mode", mode, writer.timeout_s)
            if ack.ok:
                # Enabled, the inverter runs from its present power: the ramp too.
                unit.resume()
                unit.enabled = True
                writer.needs_init = False
                writer.invalidate()
        else:
            reset = unit.reset_safety()
            if not reset:
                kept = reset.kept_by.label if reset.kept_by is not None else "unknown"
                raise ValidationError(
                    f"emergency latch kept: {kept} in the latest telemetry", resource=unit.id
                )
            result["envelope_reset"] = "cleared" if reset.cleared else "not_latched"
            try:
                ack = await comm.send_command(unit.id, "reset_alarms", None, writer.timeout_s)
            except ValidationError as exc:
                # A map without an alarm reset point: the device clears its own alarms.
                result["device"] = f"not supported: {exc}"
                return result
        if not ack.ok:
            raise DriverError(f"{action} failed: {ack.detail}", resource=unit.id)
        result["device"] = ack.detail
        return result

    async def _safety_history(self, params: Params) -> list[dict[str, Any]]:
        p = parse(cm.SafetyHistory, params, self.id)
        units = [self._unit(p.unit, online=False)] if p.unit is not None else self.units.values()
        recs = sorted((r for u in units for r in u.safety_history), key=lambda r: r["time"])
        return recs[-p.limit :] if p.limit else []

    async def _status(self, params: Params) -> dict[str, Any]:
        parse(cm.Status, params, self.id)
        return {uid: u.state() for uid, u in self.units.items()}
