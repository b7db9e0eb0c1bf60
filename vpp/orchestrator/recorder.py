"""Recording the site's bus into its SQLite history (:class:`~vpp.orchestrator.history.History`).

The launcher subscribes to every topic of the events broker and hands each message to
:meth:`Recorder.record`, which maps it to a table row:

===================================  ===========================================
message                              table
===================================  ===========================================
telemetry                            ``telemetry`` (one row per unit report)
decision                             ``decisions``
event kind ``command``               ``commands`` (server, target, command, params,
                                     identity, role, ok, refused, detail)
event kind ``bid`` / ``result``      ``bids`` / ``results``
any other event                      ``events`` (source = sender, kind, severity, text)
===================================  ===========================================

A ``command`` event is the audit of one command (accepted or refused), so it is
recorded only from a sender that serves commands (``command_servers``; the launcher
passes the topology's command servers), the sender being the bus's authenticated
publisher: any other publisher could otherwise write rows into the audit. Its data
keys: ``target`` (the unit or server the command was for), ``command``, ``params``,
``identity`` (the authenticated identity that sent the command, as the server's
transport said), ``role`` ("" when the identity has none),
``ok``, ``refused`` (a short kind such as ``not_authorised``, ``invalid``,
``rate_limited``; absent or None when accepted) and ``detail``.

Frequency and heartbeat messages are not stored: the decisions carry the frequency each
unit acted on, and liveness shows up as ``device`` events. Rows are buffered by History
and written by :meth:`Recorder.flush` (every ``history.flush_interval_s``).

:meth:`Recorder.record` never raises: it runs in the launcher's bus loop, where an odd
message (a field no row can hold) must cost that message only. One that cannot be
mapped is skipped, counted in ``skipped`` by message type and logged (once per type
and error; History sanitises and counts what it can store, see its module docstring).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.history import History

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if data.get(k) is not None:
            return data[k]
    return None


def _steps(data: Mapping[str, Any]) -> Sequence[Any]:
    steps = data.get("steps")
    return steps if isinstance(steps, list | tuple) else ()


def _step_value(step: Any, key: str, index: int) -> float | None:
    if isinstance(step, Mapping):
        v = step.get(key)
    elif isinstance(step, list | tuple) and len(step) > index:
        v = step[index]
    else:
        return None
    return float(v) if isinstance(v, int | float) else None


class Recorder:
    """Turns bus messages into history rows (see the module docstring).

    ``command_servers``: the senders whose ``command`` events are recorded (None: any).
    """

    def __init__(self, history: History, command_servers: Iterable[str] | None = None) -> None:
        self.history = history
        self.command_servers = None if command_servers is None else frozenset(command_servers)
        #: ``command`` events not recorded because their sender serves no commands.
        self.foreign_commands = 0
        #: Messages recorded, by table.
        self.counts: Counter[str] = Counter()
        #: Messages that could not be turned into a row, by message type.
        self.skipped: Counter[str] = Counter()
        self._logged: set[tuple[str, type[Exception]]] = set()

    def record(self, msg: s.Message) -> None:
        """Buffer the row(s) of ``msg`` (nothing for frequency and heartbeat messages);
        a message that cannot be recorded is counted and logged, never raised."""
        try:
            table, row = self._row(msg)
            if table:
                self.history.add(table, row)
                self.counts[table] += 1
        except Exception as exc:
            self.skipped[msg.type] += 1
            key = (msg.type, type(exc))
            if key not in self._logged:
                self._logged.add(key)
                log.warning("history: cannot record a %s message from %s (%s: %s); further "
                            "ones are only counted", msg.type, msg.sender, type(exc).__name__,
                            exc, exc_info=True)  # fmt: skip

    def _row(self, msg: s.Message) -> tuple[str, dict[str, Any]]:
        b = msg.body
        if isinstance(b, s.Telemetry):
            return "telemetry", {
                "t": msg.ts, "unit": b.unit, "power_kw": b.p_kw, "reactive_kvar": b.q_kvar,
                "soc_pct": b.soc_pct, "temp_c": b.temp_c, "safety": b.safety, "online": 1,
            }  # fmt: skip
        if isinstance(b, s.Decision):
            return "decisions", {
                "t": b.t, "unit": b.unit, "freq_hz": b.hz, "rocof_hz_s": b.rocof,
                "band": b.band, "response_kw": b.response_kw, "base_kw": b.base_kw,
                "setpoint_kw": b.setpoint_kw, "action": b.action,
            }  # fmt: skip
        if isinstance(b, s.Event):
            return self._event_row(msg.ts, msg.sender, b)
        return "", {}

    def _event_row(self, t: float, sender: str, e: s.Event) -> tuple[str, dict[str, Any]]:
        d = e.data
        if e.kind == "command":
            if self.command_servers is not None and sender not in self.command_servers:
                self._foreign_command(sender)
                return "", {}
            ok = d.get("ok")
            return "commands", {
                "t": t,
                "server": sender,
                "target": _first(d, "target") or e.unit,
                "command": d.get("command"),
                "params": d.get("params", {}),
                "identity": d.get("identity"),
                "role": d.get("role"),
                "ok": None if ok is None else int(bool(ok)),
                "refused": d.get("refused"),
                "detail": d.get("detail") or e.text,
            }
        if e.kind == "bid":
            steps = _steps(d)
            volume = _first(d, "volume_mw")
            if volume is None and steps:
                volume = sum(_step_value(x, "volume_mw", 1) or 0.0 for x in steps)
            price = _first(d, "price", "price_rs_mwh")
            if price is None and steps:
                price = _step_value(steps[0], "price_rs_mwh", 0)
            return "bids", {
                "t": t, "bid_id": d.get("bid_id"), "product": d.get("product"),
                "delivery": d.get("delivery"), "block": d.get("block"), "side": d.get("side"),
                "volume_mw": volume, "price": price,
            }  # fmt: skip
        if e.kind == "result":
            return "results", {
                "t": t, "bid_id": d.get("bid_id"), "block": d.get("block"),
                "accepted_mw": d.get("accepted_mw"), "clearing_price": d.get("clearing_price"),
            }  # fmt: skip
        text = e.text
        if d:
            text = f"{text} {json.dumps(d, sort_keys=True, default=str)}".strip()
        source = f"{sender}/{e.unit}" if e.unit else sender
        return "events", {
            "t": t, "source": source, "kind": e.kind, "severity": e.severity, "text": text
        }

    def _foreign_command(self, sender: str) -> None:
        self.foreign_commands += 1
        # Logged once only: a publisher that floods such events, under ever new names,
        # must not flood the log too.
        if self.foreign_commands == 1:
            log.warning("history: a command event from %r, which serves no commands, was not "
                        "recorded; further ones are only counted", sender)  # fmt: skip

    def flush(self) -> int:
        """Write the buffered rows (one transaction); how many were written."""
        return self.history.flush()
