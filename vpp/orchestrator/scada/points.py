"""What a SCADA master sees and may steer: the plant's logical points, by name.

Both outstations (IEC 60870-5-104, DNP3) serve the same logical points; each protocol's
point map (a data file) gives them their addresses there. A monitored point is a name of
:data:`PLANT_POINTS` (or, per unit, ``unit.<id>.<name>`` of :data:`UNIT_POINTS`) with a
:class:`PointValue`; a command point is a name of :data:`COMMAND_POINTS`.

The SCADA process builds a :data:`PointImage` from the bus every ``scada.update_s`` and
hands it to each outstation's :meth:`Outstation.update`; an outstation answers an
interrogation from the image it was given last, and sends a point spontaneously when it
changed beyond the point's deadband. A master's command goes to the :class:`CommandSink`
with the master's transport address; the sink decides (allowed points, limits), sends the
bus command with the SCADA gateway's own key, and audits it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "COMMAND_POINTS",
    "PLANT_POINTS",
    "UNIT_POINTS",
    "CommandOutcome",
    "CommandSink",
    "Outstation",
    "PointImage",
    "PointKind",
    "PointValue",
    "is_known_point",
]

#: ``float``: a measured value (IEC 104 short float, DNP3 analog input);
#: ``bool``: a state (IEC 104 single or double point, DNP3 binary input).
PointKind = Literal["float", "bool"]

#: Plant points: name -> (kind, unit or "", what it is). + power = discharge (export).
PLANT_POINTS: dict[str, tuple[PointKind, str, str]] = {
    "plant.p_mw": ("float", "MW", "measured active power of the fleet, + = export"),
    "plant.q_mvar": ("float", "Mvar", "measured reactive power of the fleet"),
    "plant.soc_pct": ("float", "%", "state of charge of the fleet, energy-weighted"),
    "plant.up_mw": ("float", "MW", "available increase of export now (headroom up)"),
    "plant.down_mw": ("float", "MW", "available decrease of export now (headroom down)"),
    "plant.target_mw": ("float", "MW", "dispatch target of the campus (schedule + AGC)"),
    "plant.units_online": ("float", "", "units reporting telemetry"),
    "plant.enabled": ("bool", "", "every online unit enabled (not stopped or tripped)"),
    "plant.breaker_closed": ("bool", "", "the plant is connected (a unit online)"),
    "plant.alarm": ("bool", "", "an alarm: a safety action other than none, a unit lost"),
    "grid.frequency_hz": ("float", "Hz", "grid frequency measured by the PMU"),
    "agc.setpoint_mw": ("float", "MW", "last AGC set-point received"),
    "agc.offset_mw": ("float", "MW", "regulation offset in force"),
    "agc.following": ("bool", "", "the offset follows the set-point (status following)"),
    "agc.reserved_up_mw": ("float", "MW", "regulation up reserved"),
    "agc.reserved_down_mw": ("float", "MW", "regulation down reserved"),
}

#: Per-unit points, served as ``unit.<id>.<name>``.
UNIT_POINTS: dict[str, tuple[PointKind, str, str]] = {
    "p_mw": ("float", "MW", "measured active power, + = export"),
    "q_mvar": ("float", "Mvar", "measured reactive power"),
    "soc_pct": ("float", "%", "state of charge"),
    "online": ("bool", "", "telemetry arrives"),
    "alarm": ("bool", "", "a safety action other than none"),
}

#: Command points: name -> (kind, unit, what it does).
COMMAND_POINTS: dict[str, tuple[PointKind, str, str]] = {
    "agc.setpoint_mw": ("float", "MW", "AGC set-point: regulation on top of the schedule"),
    "plant.target_mw": ("float", "MW", "active power set-point of the plant (campus target)"),
    "plant.enable": ("bool", "", "on: enable every unit; off: disable every unit"),
}


def is_known_point(name: str, unit_ids: set[str] | frozenset[str]) -> bool:
    """Whether ``name`` is a monitored point of a plant with units ``unit_ids``."""
    if name in PLANT_POINTS:
        return True
    if name.startswith("unit."):
        uid, _, point = name[5:].rpartition(".")
        return uid in unit_ids and point in UNIT_POINTS
    return False


@dataclass(frozen=True, slots=True)
class PointValue:
    """One point's value, when it was measured (UNIX s), and whether it is valid (False:
    unknown or stale: IEC 104 quality IV, DNP3 flag not ONLINE)."""

    value: float | bool
    time: float
    valid: bool = True


#: The plant as a master sees it: point name -> value.
PointImage = Mapping[str, PointValue]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of a master's command: carried out, or refused and why (one line)."""

    ok: bool
    reason: str = ""


class CommandSink(Protocol):
    """Where an outstation hands a master's command. ``master`` names the transport peer
    (``iec104 127.0.0.1:50123``): the authority is the connection the configuration
    admitted, never anything in the message."""

    async def __call__(self, master: str, point: str, value: float | bool) -> CommandOutcome:
        """Carry out (or refuse) ``point`` := ``value``; never raises for bad input."""
        ...


class Outstation(Protocol):
    """One protocol's server for the plant's points."""

    async def start(self) -> None:
        """Bind and start serving; raises BindError when the address cannot be bound."""
        ...

    @property
    def port(self) -> int:
        """The port bound (after :meth:`start`)."""
        ...

    def update(self, image: PointImage) -> None:
        """The plant's points now; changes beyond a deadband go out spontaneously."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: connections, frames in and out, points sent, errors by kind."""
        ...

    async def close(self) -> None:
        """Stop serving and close every connection."""
        ...
