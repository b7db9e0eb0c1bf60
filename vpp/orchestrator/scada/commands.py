"""A SCADA master's commands, carried out on the bus: :class:`ScadaCommands`.

Both outstations hand every command that passed their own protocol checks (address,
type, select-before-execute, the point map's limits) to one :class:`ScadaCommands`,
which is their :class:`~vpp.orchestrator.scada.points.CommandSink`:

- only the command points in ``scada.commands`` are carried out; the others are refused
  whatever the point map says (the configuration narrows what the ``scada`` role could
  do, never widens it);
- the value must be of the point's kind (a finite number for a set-point, a bool for a
  switch), and a power within the plant's rating;
- ``agc.setpoint_mw`` goes to the campus as ``agc`` {mw}; ``plant.target_mw`` as
  ``set_target`` {kw}; ``plant.enable`` as ``control`` {unit, action: enable|disable}
  to every unit's field controller.

Each goes out with the SCADA gateway's own Curve key (identity ``scada``): the process
that takes it checks the ``scada`` role and audits it as it audits every command, with
that identity. Here each outcome is also published as an ``scada`` event naming the
master's transport address, the point and the value, so the history shows which master
asked for what. Never raises: a bad command is an outcome with a reason.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from vpp.config.models import SiteConfig
from vpp.errors import VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.scada.points import COMMAND_POINTS, CommandOutcome

__all__ = ["ScadaCommands", "SendCommand"]

log = logging.getLogger(__name__)

#: ``send(server, name, params) -> Ack``: one bus command with the gateway's key.
SendCommand = Callable[[str, str, dict[str, Any]], Awaitable[s.Ack]]
#: ``publish(kind, data, text, severity)``: one event on the bus.
PublishEvent = Callable[[str, dict[str, Any], str, s.Severity], Awaitable[None]]


class ScadaCommands:
    """The command sink of the outstations (see the module docstring)."""

    def __init__(
        self, site: SiteConfig, allowed: Iterable[str], send: SendCommand,
        publish: PublishEvent | None = None,
    ) -> None:  # fmt: skip
        self.allowed = frozenset(allowed)
        unknown = sorted(self.allowed - COMMAND_POINTS.keys())
        if unknown:
            raise ValueError(f"scada.commands: unknown command points {unknown}")
        self.send = send
        self.publish = publish
        self.owner = {u.id: f.id for f in site.field for u in f.units}
        self.rating_mw = sum(u.rated_power_kw for f in site.field for u in f.units) / 1000.0
        self.counts: collections.Counter[str] = collections.Counter()

    async def __call__(self, master: str, point: str, value: float | bool) -> CommandOutcome:
        """Carry out ``point`` := ``value`` for ``master``; the outcome, never an error."""
        self.counts["commands"] += 1
        try:
            outcome = await self._carry_out(point, value)
        except Exception as exc:  # a bug must refuse the command, not kill the outstation
            log.exception("scada: command %s := %r from %s failed", point, value, master)
            outcome = CommandOutcome(False, f"internal error: {type(exc).__name__}")
        if not outcome.ok:
            self.counts["refused"] += 1
            log.warning("scada: refused %s := %r from %s: %s", point, value, master,
                        outcome.reason)  # fmt: skip
        if self.publish is not None:
            verdict = "done" if outcome.ok else f"refused: {outcome.reason}"
            await self.publish(
                "scada",
                {"what": "command", "master": master, "point": point,
                 "value": value, "ok": outcome.ok, "reason": outcome.reason},
                f"{master}: {point} := {value}: {verdict}",
                "info" if outcome.ok else "warning",
            )  # fmt: skip
        return outcome

    async def _carry_out(self, point: str, value: float | bool) -> CommandOutcome:
        if point not in COMMAND_POINTS:
            return CommandOutcome(False, f"no command point {point!r}")
        if point not in self.allowed:
            return CommandOutcome(False, f"{point} is not allowed by scada.commands")
        kind = COMMAND_POINTS[point][0]
        if kind == "bool":
            if not isinstance(value, bool):
                return CommandOutcome(False, f"{point} takes on/off, not {value!r}")
            return await self._enable(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return CommandOutcome(False, f"{point} takes a number, not {value!r}")
        mw = float(value)
        if not math.isfinite(mw) or abs(mw) > self.rating_mw:
            return CommandOutcome(
                False, f"{point} = {mw} MW is outside the plant's rating +-{self.rating_mw} MW"
            )
        if point == "agc.setpoint_mw":
            return await self._one("campus", "agc", {"mw": mw})
        return await self._one("campus", "set_target", {"kw": mw * 1000.0})

    async def _one(self, server: str, name: str, params: dict[str, Any]) -> CommandOutcome:
        try:
            ack = await self.send(server, name, params)
        except VppError as exc:  # no answer, or no key for the identity
            return CommandOutcome(False, f"{server} {name}: {exc}")
        if not ack.ok:
            return CommandOutcome(False, f"{server} refused {name}: {ack.error}")
        return CommandOutcome(True)

    async def _enable(self, on: bool) -> CommandOutcome:
        action = "enable" if on else "disable"
        units = list(self.owner)
        done = await asyncio.gather(*(
            self._one(self.owner[u], "control", {"unit": u, "action": action}) for u in units
        ))  # fmt: skip
        failed = [f"{u}: {o.reason}" for u, o in zip(units, done, strict=True) if not o.ok]
        if failed:
            return CommandOutcome(False, f"{action} failed for {len(failed)} of "
                                         f"{len(units)} units: {failed[0]}")  # fmt: skip
        return CommandOutcome(True)
