"""The commands of a field controller (the handlers of its command server).

=====================  ====================================================================
command                params -> result
=====================  ====================================================================
set_base               {unit, kw}: dispatch base power (kW, + = discharge); ends a schedule
set_schedule           {unit, start, block_s, base_kw: [...]}: base power by time block
set_participation      {unit, p_max_kw}: the droop's full-response kW (0 = out)
set_power              {unit, kw}: operator manual base power (as set_base)
control                {unit, action}: enable, disable, reset_alarms, emergency_stop
safety_history         {unit?, limit?} -> [{time, unit, code, action, detail, ...}]
status                 {} -> {unit: {online, soc, power, base, setpoint, safety, ...}}
=====================  ====================================================================

A command naming an unknown unit or with a bad parameter fails with ValidationError; a
command to a unit whose inverter is offline fails with DeviceOfflineError (both become a
not-ok ack with the reason). Every command, done or refused, is published as an event of
kind ``command``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import DeviceOfflineError, DriverError, ValidationError
from vpp.orchestrator.field.unit import FieldUnit, Schedule
from vpp.orchestrator.field.writer import SetpointWriter

__all__ = ["ACTIONS", "FieldCommands"]

ACTIONS = ("enable", "disable", "reset_alarms", "emergency_stop")

Params = Mapping[str, Any]


def _number(params: Params, key: str, where: str) -> float:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{key!r} must be a finite number, got {value!r}", resource=where)
    return float(value)


class FieldCommands:
    """Command handlers over the controller's units, communicators and writers."""

    id: str
    units: dict[str, FieldUnit]
    comms: dict[str, ResourceCommunicator]
    writers: dict[str, SetpointWriter]

    def command_table(self) -> dict[str, Callable[[Params], Awaitable[Any]]]:
        """Handlers by command name (each takes the command's params)."""
        return {
            "set_base": self._set_base,
            "set_power": self._set_base,
            "set_schedule": self._set_schedule,
            "set_participation": self._set_participation,
            "control": self._control,
            "safety_history": self._safety_history,
            "status": self._status,
        }

    def _unit(self, params: Params, *, online: bool = True) -> FieldUnit:
        uid = params.get("unit")
        unit = self.units.get(uid) if isinstance(uid, str) else None
        if unit is None:
            raise ValidationError(f"no unit {uid!r}; known: {sorted(self.units)}", resource=self.id)
        if online and unit.online is False:
            err = self.comms[unit.id].status()[unit.id]["last_error"] or "no answer"
            raise DeviceOfflineError(f"inverter offline ({err}); command refused", resource=unit.id)
        return unit

    async def _set_base(self, params: Params) -> dict[str, Any]:
        unit = self._unit(params)
        kw = _number(params, "kw", unit.id)
        rated = unit.cfg.rated_power_kw
        if abs(kw) > rated:
            raise ValidationError(f"kw {kw:g} beyond the rating +-{rated:g}", resource=unit.id)
        unit.set_base(kw)
        return {"unit": unit.id, "base_kw": kw}

    async def _set_schedule(self, params: Params) -> dict[str, Any]:
        unit = self._unit(params)
        start = _number(params, "start", unit.id)
        block = _number(params, "block_s", unit.id)
        values = params.get("base_kw")
        if block <= 0:
            raise ValidationError(f"block_s must be > 0, got {block:g}", resource=unit.id)
        if not isinstance(values, list) or not values:
            raise ValidationError("base_kw must be a non-empty list", resource=unit.id)
        kws = tuple(_number({"base_kw": v}, "base_kw", unit.id) for v in values)
        rated = unit.cfg.rated_power_kw
        if max(abs(v) for v in kws) > rated:
            raise ValidationError(f"base_kw beyond the rating +-{rated:g}", resource=unit.id)
        unit.set_schedule(Schedule(start, block, kws))
        return {"unit": unit.id, "blocks": len(kws), "end": start + block * len(kws)}

    async def _set_participation(self, params: Params) -> dict[str, Any]:
        unit = self._unit(params)
        unit.set_participation(_number(params, "p_max_kw", unit.id))
        return {"unit": unit.id, "p_max_kw": unit.participation_kw}

    async def _control(self, params: Params) -> dict[str, Any]:
        unit = self._unit(params)
        action = params.get("action")
        if action not in ACTIONS:
            raise ValidationError(
                f"action must be one of {ACTIONS}, got {action!r}", resource=unit.id
            )
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
                unit.enabled = True
                writer.needs_init = False
                writer.invalidate()
        else:
            was_latched = (
                unit.pipeline.decision is not None and unit.pipeline.decision.safety.latched
            )
            reset = unit.pipeline.reset_safety()
            if was_latched and not reset:
                raise ValidationError(
                    "emergency latch kept: its cause is still present", resource=unit.id
                )
            result["envelope_reset"] = reset
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
        limit = params.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValidationError(f"limit must be an integer >= 0, got {limit!r}", resource=self.id)
        units = (
            [self._unit(params, online=False)]
            if params.get("unit") is not None
            else list(self.units.values())
        )
        recs = sorted((r for u in units for r in u.safety_history), key=lambda r: r["time"])
        return recs[-limit:] if limit else []

    async def _status(self, params: Params) -> dict[str, Any]:
        return {uid: u.state() for uid, u in self.units.items()}
