"""The SCADA command sink: which points, which values, where each goes on the bus.

``send`` here records what would go on the bus and answers as the server would: it is
the sink's own injection point, not a stand-in for a peer (the end-to-end test in
test_scada_site.py sends through a real site).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.config.loader import load
from vpp.errors import CommandTimeoutError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.scada.commands import ScadaCommands
from vpp.orchestrator.scada.points import COMMAND_POINTS

SITE = load(None, env={})
RATING_MW = sum(u.rated_power_kw for u in SITE.units()) / 1000.0


class Bus:
    """Records each command; refuses the ones in ``refuse``; times out ``silent`` servers."""

    def __init__(self, refuse: set[str] | None = None, silent: set[str] | None = None) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self.refuse = refuse or set()
        self.silent = silent or set()

    async def send(self, server: str, name: str, params: dict[str, Any]) -> s.Ack:
        self.sent.append((server, name, params))
        if server in self.silent:
            raise CommandTimeoutError("no answer", command=name, where=server)
        if server in self.refuse:
            return s.Ack(ok=False, error="refused by role")
        return s.Ack(ok=True, result={})

    async def publish(self, kind: str, data: dict[str, Any], text: str, sev: s.Severity) -> None:
        self.events.append({"kind": kind, **data, "severity": sev, "text": text})


def sink(bus: Bus, allowed: tuple[str, ...] = tuple(COMMAND_POINTS)) -> ScadaCommands:
    return ScadaCommands(SITE, allowed, bus.send, bus.publish)


def test_each_point_goes_to_its_server_as_its_command() -> None:
    bus = Bus()
    cmds = sink(bus)

    async def go() -> None:
        assert (await cmds("iec104 127.0.0.1:1", "agc.setpoint_mw", 0.4)).ok
        assert (await cmds("iec104 127.0.0.1:1", "plant.target_mw", -0.25)).ok
        assert (await cmds("dnp3 127.0.0.1:2", "plant.enable", False)).ok

    asyncio.run(go())
    assert bus.sent[0] == ("campus", "agc", {"mw": 0.4})
    assert bus.sent[1] == ("campus", "set_target", {"kw": -250.0})
    owners = {u.id: f.id for f in SITE.field for u in f.units}
    assert sorted(bus.sent[2:], key=str) == sorted(
        ((owners[u], "control", {"unit": u, "action": "disable"}) for u in owners), key=str
    )
    # Each outcome is published with the master's transport address.
    assert [e["master"] for e in bus.events] == ["iec104 127.0.0.1:1"] * 2 + ["dnp3 127.0.0.1:2"]
    assert all(e["ok"] and e["what"] == "command" for e in bus.events)


def test_points_not_allowed_by_the_configuration_are_refused_and_nothing_is_sent() -> None:
    bus = Bus()
    cmds = sink(bus, allowed=("agc.setpoint_mw",))
    out = asyncio.run(cmds("iec104 127.0.0.1:1", "plant.enable", True))
    assert not out.ok and "not allowed by scada.commands" in out.reason
    out = asyncio.run(cmds("iec104 127.0.0.1:1", "plant.nonsense", 1.0))
    assert not out.ok and "no command point" in out.reason
    assert bus.sent == []
    assert cmds.counts["refused"] == 2
    assert [e["ok"] for e in bus.events] == [False, False]


def test_unknown_command_points_in_the_configuration_are_an_error() -> None:
    with pytest.raises(ValueError, match="unknown command points"):
        ScadaCommands(SITE, ["plant.explode"], Bus().send)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.integers(-10**6, 10**6),
    st.text(max_size=3),
))  # fmt: skip
def test_a_set_point_is_sent_only_when_it_is_a_finite_number_within_the_rating(value: Any) -> None:
    bus = Bus()
    out = asyncio.run(sink(bus)("iec104 x", "agc.setpoint_mw", value))
    good = (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and abs(value) <= RATING_MW)  # fmt: skip
    assert out.ok == good
    assert len(bus.sent) == (1 if good else 0)


def test_a_switch_takes_only_on_or_off() -> None:
    bus = Bus()
    out = asyncio.run(sink(bus)("dnp3 x", "plant.enable", 1.0))
    assert not out.ok and bus.sent == []


def test_a_refusal_or_silence_on_the_bus_is_a_refused_command_with_the_reason() -> None:
    bus = Bus(refuse={"campus"}, silent={"field-b"})
    cmds = sink(bus)
    out = asyncio.run(cmds("iec104 x", "agc.setpoint_mw", 0.1))
    assert not out.ok and "campus refused agc: refused by role" in out.reason
    out = asyncio.run(cmds("iec104 x", "plant.enable", True))
    # field-a's units were enabled, field-b's did not answer: the master is told.
    assert not out.ok and "1 of 3 units" in out.reason and "bess-3" in out.reason
    assert [e["severity"] for e in bus.events] == ["warning", "warning"]
