"""The commands of a field controller (the handlers of its command server).

=====================  ====================================================================
command                params -> result
=====================  ====================================================================
set_base               {unit, kw}: dispatch base power (kW, + = discharge); ends a schedule
set_schedule           {unit, start, block_s, base_kw: [...]}: base power by time block
set_participation      {unit, p_max_kw}: the droop's full-response kW (0 = out)
set_droop              {unit, droop_percent?, deadband_low_hz?, deadband_high_hz?,
                       knee_hz?, knee_percent?, full_hz?, ramp_kw_per_s?,
                       inertia_kw_per_hz_s?}: new droop settings
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
force. A bad parameter fails with CommandError naming it; a command to a unit whose
inverter is offline fails with DeviceOfflineError (both become a not-ok ack with the
reason). Every command, done or refused, is published as an event of kind ``command``.
New settings reach the unit's pipeline in place, so its setpoint moves on within the
ramp (docs/pipeline.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from vpp.config.commands import CommandLimits
from vpp.config.field import DroopSettings
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import DeviceOfflineError, DriverError, ValidationError
from vpp.errors import CommandError, VppError
from vpp.orchestrator.bus import command_models as cm
from vpp.orchestrator.bus.command_models import check_power, check_schedule, parse
from vpp.orchestrator.field.unit import FieldUnit, Schedule
from vpp.orchestrator.field.writer import SetpointWriter

__all__ = ["FieldCommands"]

Params = Mapping[str, Any]


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
            raise CommandError(f"no unit {uid!r}; known: {sorted(self.units)}", field="unit",
                               where=self.id)  # fmt: skip
        if online and unit.online is False:
            err = self.comms[unit.id].status()[unit.id]["last_error"] or "no answer"
            raise DeviceOfflineError(f"inverter offline ({err}); command refused", resource=unit.id)
        return unit

    async def _set_base(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetBase, params, self.id)
        unit = self._unit(p.unit)
        check_power(p.kw, unit.cfg.rated_power_kw, "kw", unit.id)
        unit.set_base(p.kw)
        return {"unit": unit.id, "base_kw": p.kw}

    async def _set_schedule(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetSchedule, params, self.id)
        unit = self._unit(p.unit)
        end = check_schedule(p.start, p.block_s, p.base_kw, limits=self.limits,
                             rating_kw=unit.cfg.rated_power_kw, now=time.time(),
                             where=unit.id)  # fmt: skip
        unit.set_schedule(Schedule(p.start, p.block_s, p.base_kw))
        return {"unit": unit.id, "blocks": len(p.base_kw), "end": end}

    async def _set_participation(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetParticipation, params, self.id)
        unit = self._unit(p.unit)
        check_power(p.p_max_kw, unit.cfg.rated_power_kw, "p_max_kw", unit.id)
        unit.set_participation(p.p_max_kw)
        return {"unit": unit.id, "p_max_kw": unit.participation_kw}

    async def _set_droop(self, params: Params) -> dict[str, Any]:
        p = parse(cm.SetDroop, params, self.id)
        unit = self._unit(p.unit)
        settings = DroopSettings.model_validate(p.model_dump(exclude={"unit"}))
        try:
            unit.set_droop(settings)
        except VppError as exc:  # the core's own check (a ConfigError naming the field)
            raise CommandError(f"droop settings refused: {exc}", field=getattr(exc, "field", ""),
                               where=unit.id) from None  # fmt: skip
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
                raise CommandError(f"emergency latch kept: {kept} in the latest telemetry",
                                   field="action", where=unit.id)  # fmt: skip
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
