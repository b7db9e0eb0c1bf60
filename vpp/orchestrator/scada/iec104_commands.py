"""Commands a master sends the IEC 60870-5-104 outstation: single, double and set-point
commands (with or without time tag), select-before-execute, deactivation.

Checks in the order of the standard's negative causes: a type not served (44, answered
by the outstation), a cause other than activation or deactivation (45), another common
address (46), an address that is no command point of that type (47); then the time tag's
age, the value (finite, within the point's range; a double command 1 = off, 2 = on),
select-before-execute. Only then does the command go to the :class:`CommandSink`, with
the master's transport address as its authority. Every refusal is a negative
confirmation, counted (``commands_refused`` and ``error.<kind>``) and logged (throttled).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable, Sequence

from vpp._core import Iec104Apdu, iec104_reply
from vpp.errors import ScadaError
from vpp.orchestrator.scada.iec104_link import Iec104Link, LogThrottle
from vpp.orchestrator.scada.iec104_map import CommandPoint, CommandType, Iec104Config
from vpp.orchestrator.scada.points import CommandSink

__all__ = ["COMMAND_TYPES", "Iec104Commands"]

#: Command type id -> (the map's command type, carries a CP56Time2a).
COMMAND_TYPES: dict[int, tuple[CommandType, bool]] = {
    45: ("single_command", False),
    46: ("double_command", False),
    50: ("setpoint_float", False),
    58: ("single_command", True),
    59: ("double_command", True),
    63: ("setpoint_float", True),
}

#: Interrogation, clock synchronisation and end of initialisation (the station's own).
C_IC_NA_1, C_CS_NA_1, M_EI_NA_1 = 100, 103, 70
COT_ACT, COT_ACTCON, COT_DEACT, COT_DEACTCON, COT_ACTTERM = 6, 7, 8, 9, 10
COT_UNKNOWN_CAUSE, COT_UNKNOWN_CA, COT_UNKNOWN_IOA = 45, 46, 47


class Iec104Commands:
    """Carries out the commands of every connection of one outstation."""

    def __init__(
        self,
        config: Iec104Config,
        common_address: int,
        commands: Sequence[CommandPoint],
        sink: CommandSink,
        counters: Counter[str],
        throttle: LogThrottle,
        clock: Callable[[], float],
    ) -> None:
        self._cfg = config
        self._ca = common_address
        self._by_ioa = {c.ioa: c for c in commands}
        self._sink = sink
        self._counters = counters
        self._throttle = throttle
        self._clock = clock
        self._tz_s = config.time_zone_offset_h * 3600.0

    def _reply(self, link: Iec104Link, frame: bytes, cot: int, negative: bool = False) -> None:
        link.send_asdu(iec104_reply(frame, cot, negative))

    def _refuse(self, link: Iec104Link, frame: bytes, cot: int, kind: str, message: str) -> None:
        err = ScadaError(message, kind=kind, where=link.master)
        self._counters["commands_refused"] += 1
        self._counters[f"error.{kind}"] += 1
        self._throttle.warning(f"{err}: command refused")
        self._reply(link, frame, cot, negative=True)

    async def handle(self, link: Iec104Link, apdu: Iec104Apdu, frame: bytes) -> None:
        """Answer one command ASDU (its type is one of :data:`COMMAND_TYPES`)."""
        self._counters["commands"] += 1
        want, timed = COMMAND_TYPES[apdu.type_id]
        if apdu.cot not in (COT_ACT, COT_DEACT):
            self._refuse(link, frame, COT_UNKNOWN_CAUSE, "cause", f"cause {apdu.cot} for a command")
            return
        if apdu.common_address != self._ca:
            self._refuse(
                link, frame, COT_UNKNOWN_CA, "address",
                f"common address {apdu.common_address} (this station is {self._ca})",
            )  # fmt: skip
            return
        if len(apdu.objects) != 1:
            link.fail(ScadaError(
                f"a command carries {len(apdu.objects)} objects, not one",
                kind="asdu", where=link.master,
            ))  # fmt: skip
            return
        obj = apdu.objects[0]
        point = self._by_ioa.get(obj.ioa)
        if point is None or point.type != want:
            self._refuse(
                link, frame, COT_UNKNOWN_IOA, "address",
                f"IOA {obj.ioa} is no {want} point (type {apdu.type_id})",
            )  # fmt: skip
            return
        if apdu.cot == COT_DEACT:
            # Deactivation withdraws a pending select; nothing else can be withdrawn.
            pending = link.selects.pop(obj.ioa, None)
            self._reply(link, frame, COT_DEACTCON, negative=pending is None)
            return
        if timed:
            age = self._clock() - ((obj.time or 0.0) - self._tz_s)
            limit = self._cfg.command_max_age_s
            if obj.time is None or obj.time_invalid or abs(age) > limit:
                self._refuse(
                    link, frame, COT_ACTCON, "stale",
                    f"{point.name}: time tag {age:.1f} s old (limit {limit} s)",
                )  # fmt: skip
                return
        value = self._value(point, obj.value)
        if value is None:
            self._refuse(
                link, frame, COT_ACTCON, "value",
                f"{point.name}: value {obj.value!r} refused (range {point.min}..{point.max})",
            )  # fmt: skip
            return
        now = asyncio.get_running_loop().time()
        if obj.select:
            if not point.select:
                self._refuse(
                    link, frame, COT_ACTCON, "not_allowed",
                    f"{point.name}: select to a point without select-before-execute",
                )  # fmt: skip
                return
            link.selects[obj.ioa] = (apdu.type_id, value, now + self._cfg.select_timeout_s)
            self._reply(link, frame, COT_ACTCON)
            return
        if point.select:
            sel = link.selects.pop(obj.ioa, None)
            if sel is None or sel[2] < now or sel[0] != apdu.type_id or sel[1] != value:
                why = "no select" if sel is None else "the select expired or does not match"
                self._refuse(
                    link, frame, COT_ACTCON, "not_selected", f"{point.name}: execute with {why}"
                )
                return
        await self._execute(link, frame, point, value)

    def _value(self, point: CommandPoint, raw: object) -> float | bool | None:
        if point.type == "setpoint_float":
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return None
            v = float(raw)
            return v if math.isfinite(v) and point.min <= v <= point.max else None
        if point.type == "double_command":
            return {1: False, 2: True}.get(raw) if isinstance(raw, int) else None
        return bool(raw)

    async def _execute(
        self, link: Iec104Link, frame: bytes, point: CommandPoint, value: float | bool
    ) -> None:
        try:
            outcome = await self._sink(link.master, point.name, value)
        except Exception as exc:  # the sink must not raise; if it does, refuse safely
            self._refuse(link, frame, COT_ACTCON, "sink", f"{point.name}: the sink raised {exc!r}")
            return
        if not outcome.ok:
            self._refuse(
                link, frame, COT_ACTCON, "refused", f"{point.name} := {value!r}: {outcome.reason}"
            )
            return
        self._reply(link, frame, COT_ACTCON)
        self._reply(link, frame, COT_ACTTERM)
