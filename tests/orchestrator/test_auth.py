"""Identities from the transport, roles per command, and the authenticated events bus,
over real ZeroMQ sockets with Curve keys (no site: the bus objects on their own)."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.aio import run
from vpp.config import load_text
from vpp.errors import CommandTimeoutError, ConfigError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.auth import (
    BUILTIN_ROLES,
    Authorizer,
    Grant,
    Policy,
    RateLimiter,
    Role,
    SecuritySection,
)
from vpp.orchestrator.bus.broker import Broker
from vpp.orchestrator.bus.commands import AuditRecord, Server
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve
from vpp.orchestrator.bus.keys import site_keys
from vpp.orchestrator.bus.pubsub import Client, Publisher, Subscriber
from vpp.orchestrator.bus.topology import BusSection, Topology

FIELDS = ["field-a", "field-b"]


def policy() -> Policy:
    return Policy.build(SecuritySection(), FIELDS)


@pytest.mark.parametrize(
    ("who", "command", "server", "unit", "ok"),
    [
        ("campus", "set_base", "field:field-a", "bess-1", True),
        ("campus", "control", "field:field-a", "bess-1", False),
        ("grid", "set_participation", "field:field-b", "bess-3", True),
        ("grid", "set_base", "field:field-b", "bess-3", False),
        ("market", "set_schedule", "campus:campus", None, True),
        ("market", "control", "field:field-a", "bess-1", False),
        ("field-a", "control", "field:field-b", "bess-3", False),
        ("field-a", "status", "field:field-a", None, False),
        ("operator", "control", "field:field-a", "bess-1", True),
        ("operator", "run", "market:market", None, True),
        ("viewer", "status", "field:field-a", None, True),
        ("viewer", "safety_history", "field:field-a", None, True),
        ("viewer", "control", "field:field-a", "bess-1", False),
        ("viewer", "run", "market:market", None, False),
        ("", "status", "field:field-a", None, False),
        ("stranger", "status", "field:field-a", None, False),
    ],
)
def test_builtin_roles_grant_the_least_each_needs(
    who: str, command: str, server: str, unit: str | None, ok: bool
) -> None:
    d = policy().decide(who, command, server, unit)
    assert d.ok is ok, d
    assert d.refused == ("" if ok else "not_authorised")


def test_configured_roles_narrow_to_units_and_servers() -> None:
    section = SecuritySection(
        roles={"night": Role(grants=(Grant(commands=("control",), servers=("field:field-a",),
                                           units=("bess-1",)),))},
        identities={"alice": ("night",), "bob": ("viewer", "night")},
    )
    p = Policy.build(section, FIELDS)
    assert p.decide("alice", "control", "field:field-a", "bess-1").ok
    assert not p.decide("alice", "control", "field:field-a", "bess-2").ok
    assert not p.decide("alice", "control", "field:field-a", None).ok
    assert not p.decide("alice", "control", "field:field-b", "bess-1").ok
    d = p.decide("bob", "control", "field:field-a", "bess-1")
    assert d.ok and d.role == "night"
    assert p.decide("bob", "status", "field:field-b", None).role == "viewer"
    with pytest.raises(ValueError, match="unknown role"):
        SecuritySection(identities={"eve": ("root",)})


def test_a_site_config_with_an_unknown_role_is_refused_at_load() -> None:
    text = "field: [{id: f, units: [{id: u, rated_power_kw: 1, capacity_kwh: 1}]}]\n"
    with pytest.raises(ConfigError) as info:
        load_text(text + "security: {identities: {eve: [root]}}\n")
    assert "security" in (info.value.field or "") and "root" in str(info.value)


names = st.sampled_from(["campus", "grid", "market", "operator", "viewer", "field-a",
                         "field-b", "launcher", "", "eve"])  # fmt: skip
commands = st.sampled_from(["set_base", "set_power", "set_schedule", "set_participation",
                            "set_droop", "control", "status", "run", "set_target", "fleet",
                            "safety_history", "events"])  # fmt: skip
servers = st.sampled_from(["field:field-a", "field:field-b", "campus:campus", "grid:grid",
                           "market:market"])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(who=names, command=commands, server=servers,
       unit=st.none() | st.sampled_from(["bess-1", "bess-2", "x*"]))
def test_a_decision_is_exactly_what_some_grant_of_some_role_allows(
    who: str, command: str, server: str, unit: str | None
) -> None:
    # The rule restated by brute force over the built-in tables: no path grants more.
    pol = policy()
    expected = any(
        ("*" in g.commands or command in g.commands)
        and any(fnmatch.fnmatchcase(server, pat) for pat in g.servers)
        and ("*" in g.units
             or (unit is not None and any(fnmatch.fnmatchcase(unit, p) for p in g.units)))
        for r in pol.roles_of(who)
        for g in BUILTIN_ROLES[r].grants
    )
    assert pol.decide(who, command, server, unit).ok is expected
    # Publishing is for the site's processes only, never for people or strangers.
    assert pol.may_publish(who) is (who in ("campus", "grid", "market", "launcher",
                                          "field-a", "field-b"))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300))
def test_the_rate_limiter_never_lets_more_than_burst_plus_rate_times_time(
    steps: list[float],
) -> None:
    now = [0.0]
    lim = RateLimiter(rate=10.0, burst=5, clock=lambda: now[0])
    taken = 0
    for dt in steps:
        now[0] += dt
        taken += lim.take("x")
    assert taken <= 5 + 10.0 * now[0] + 1e-9
    assert lim.take("y")  # another identity has its own bucket


def test_grant_needs_a_command() -> None:
    with pytest.raises(ValueError):
        Grant(commands=())


def make_keys(tmp_path: Path, names: list[str]) -> Path:
    keys = tmp_path / "keys"
    site_keys(keys, names)
    return keys


def test_the_server_knows_the_sender_from_its_key_and_audits_every_command(
    tmp_path: Path,
) -> None:
    keys = make_keys(tmp_path, ["field-a", "campus", "market", "operator"])
    audit: list[AuditRecord] = []
    authz = Authorizer(policy(), "field", "field-a", RateLimiter(1000.0, 1000))

    async def stop(msg: s.CommandMsg) -> Any:
        return {"stopped": msg.body.params["unit"]}

    async def go() -> list[s.Ack]:
        curve = ServerCurve(keys / "field-a.key_secret", keys)
        async with Server("tcp://127.0.0.1:0", {"control": stop, "set_base": stop},
                          curve=curve, authorizer=authz, audit=audit.append) as srv:  # fmt: skip
            acks = []
            for who, name in (("market", "control"), ("operator", "control"),
                              ("campus", "set_base")):  # fmt: skip
                cc = ClientCurve(keys / f"{who}.key_secret", keys / "field-a.key")
                # The envelope's sender claims to be the operator: it changes nothing.
                async with Client(srv.endpoint, name="operator", curve=cc, timeout=3) as cli:
                    acks.append(await cli.request(name, {"unit": "bess-1", "action": "x"}))
            return acks

    market, operator, campus = run(go())
    assert not market.ok and market.refused == "not_authorised"
    assert "market" in (market.error or "")
    assert operator.ok and operator.result == {"stopped": "bess-1"}
    assert campus.ok
    assert [(r.identity, r.role, r.command, r.ok, r.refused) for r in audit] == [
        ("market", "market", "control", False, "not_authorised"),
        ("operator", "operator", "control", True, None),
        ("campus", "campus", "set_base", True, None),
    ]
    assert authz.refused == {"not_authorised": 1}


def test_a_server_refuses_unknown_and_invalid_commands_by_their_model(tmp_path: Path) -> None:
    topo = Topology.build(BusSection(), FIELDS, tmp_path, make_keys=False)
    audit: list[AuditRecord] = []

    async def ok(msg: s.CommandMsg) -> Any:
        return "ran"

    async def go() -> list[s.Ack]:
        server = topo.server("campus", {"set_target": ok, "nuke": ok}, audit.append)
        async with server, Client(topo.commands["campus"], timeout=3) as cli:
            return [await cli.request("set_target", {"kw": 5.0}),
                    await cli.request("set_target", {"kw": "lots"}),
                    await cli.request("nuke")]  # fmt: skip

    good, bad, nuke = run(go())
    assert good.ok and good.result == "ran"
    assert bad.refused == "invalid" and "kw" in (bad.error or "")
    # A handler the model table does not know is refused like any unknown command.
    assert nuke.refused == "invalid" and "unknown command" in (nuke.error or "")
    assert [r.refused for r in audit] == [None, "invalid", "invalid"]


# Both relays: the compiled core's (what a site runs) and the Python one it falls back to.
RELAYS = pytest.mark.parametrize("relay", ["core", "python"])


@RELAYS
def test_the_broker_stamps_publishers_and_refuses_keyless_and_readers(
    tmp_path: Path, relay: str
) -> None:
    topo = Topology.build(BusSection(dir=tmp_path), FIELDS, tmp_path, make_keys=True)
    assert topo.keys_dir is not None and topo.authenticated
    keys = topo.keys_dir

    async def go() -> tuple[list[s.Message], Subscriber, Any]:
        broker = topo.broker()
        broker.native = relay == "core"
        async with broker:
            assert broker.relay == relay
            sub = topo.subscriber("viewer", ("event/",))
            honest = topo.publisher("field-a")
            liar = topo.publisher("field-b")  # writes field-a's name in its messages
            keyless = Publisher(topo.events_in, bind=False)
            viewer = Publisher(topo.events_in, bind=False,
                               curve=ClientCurve(keys / "viewer.key_secret",
                                                 keys / "broker.key"))  # fmt: skip
            got: list[s.Message] = []
            try:
                await asyncio.sleep(0.5)
                for i in range(5):
                    for pub in (liar, keyless, viewer, honest):
                        pub.send_now(s.make(s.Event(kind="k", text=str(i)), "field-a"))
                    await asyncio.sleep(0.05)
                while len(got) < 5:
                    got.append(await asyncio.wait_for(sub.recv(), 3))
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(sub.recv(), 0.5)
            finally:
                for ep in (sub, honest, liar, keyless, viewer):
                    ep.close()
            return got, sub, dict(broker.errors)

    got, sub, broker_errors = run(go())
    assert [m.body.text for m in got] == ["0", "1", "2", "3", "4"]  # type: ignore[union-attr]
    assert all(m.sender == "field-a" for m in got)
    assert sub.errors["spoofed"] == 5
    # The viewer's key is known but may not publish: ZAP refused it by its role.
    assert broker_errors.get("auth", 0) >= 1


def test_a_keyless_subscriber_reads_nothing(tmp_path: Path) -> None:
    topo = Topology.build(BusSection(dir=tmp_path), FIELDS, tmp_path, make_keys=True)

    async def go() -> None:
        async with topo.broker():
            pub = topo.publisher("field-a")
            thief = Subscriber(topo.events_out)
            reader = topo.subscriber("viewer")
            try:
                await asyncio.sleep(0.5)
                for _ in range(10):
                    pub.send_now(s.make(s.Event(kind="k"), "field-a"))
                    await asyncio.sleep(0.02)
                assert (await asyncio.wait_for(reader.recv(), 3)).sender == "field-a"
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(thief.recv(), 1.0)
            finally:
                for ep in (pub, thief, reader):
                    ep.close()

    run(go())


def test_an_anonymous_client_of_a_curve_server_gets_no_answer(tmp_path: Path) -> None:
    keys = make_keys(tmp_path, ["field-a"])

    async def go() -> None:
        curve = ServerCurve(keys / "field-a.key_secret", keys)
        async with Server("tcp://127.0.0.1:0", {}, curve=curve) as srv:
            cli = Client(srv.endpoint, insecure=True, timeout=0.3, retries=0)
            async with cli:
                with pytest.raises(CommandTimeoutError):
                    await cli.request("status")

    run(go())


@RELAYS
def test_the_broker_holds_a_flooding_publisher_to_its_rate_and_not_the_others(
    tmp_path: Path, relay: str
) -> None:
    topo = Topology.build(BusSection(dir=tmp_path), FIELDS, tmp_path, make_keys=True)
    keys = topo.keys_dir
    assert keys is not None

    async def go() -> tuple[dict[str, int], Any]:
        broker = Broker(topo.events_in, topo.events_out,
                        curve=ServerCurve(keys / "broker.key_secret", keys),
                        policy=Policy.build(SecuritySection(), FIELDS),
                        publish_rate=RateLimiter(rate=1.0, burst=100),
                        native=relay == "core")  # fmt: skip
        got: dict[str, int] = {"field-a": 0, "field-b": 0}
        async with broker:
            assert broker.relay == relay
            sub = topo.subscriber("viewer", ("event/",), hwm=100_000)
            flood, calm = topo.publisher("field-a", hwm=100_000), topo.publisher("field-b")
            try:
                await asyncio.sleep(0.5)
                for i in range(2000):
                    flood.send_now(s.make(s.Event(kind="k"), "field-a"))
                    if i % 100 == 0:
                        calm.send_now(s.make(s.Event(kind="k"), "field-b"))
                        await asyncio.sleep(0.01)
                with contextlib.suppress(TimeoutError):
                    while True:
                        msg = await asyncio.wait_for(sub.recv(), 1.0)
                        got[msg.sender] += 1
            finally:
                for ep in (sub, flood, calm):
                    ep.close()
        return got, broker

    got, broker = run(go(), timeout=60)
    # A burst of 100 and a token a second: the flood is cut, the calm publisher is not.
    assert 100 <= got["field-a"] <= 110
    assert got["field-b"] == 20
    assert broker.dropped["field-a"] == 2000 - got["field-a"]
    assert broker.errors["rate_limited"] == broker.dropped["field-a"]


@RELAYS
def test_the_broker_drops_messages_of_other_than_two_frames(tmp_path: Path, relay: str) -> None:
    topo = Topology.build(BusSection(dir=tmp_path), FIELDS, tmp_path, make_keys=True)

    async def go() -> tuple[list[str], Any]:
        broker = topo.broker()
        broker.native = relay == "core"
        async with broker:
            sub = topo.subscriber("viewer", ("event/",))
            pub = topo.publisher("field-a")
            got: list[str] = []
            try:
                await asyncio.sleep(0.5)
                good = s.make(s.Event(kind="k", text="good"), "field-a")
                topic, payload = good.topic, s.encode(good)
                for parts in ([topic], [topic, payload, b"field-b"], [topic, payload, b"", b""],
                              [topic, payload]):  # fmt: skip
                    pub.sock.send_multipart(parts)
                with contextlib.suppress(TimeoutError):
                    while True:
                        msg = await asyncio.wait_for(sub.recv(), 1.0)
                        got.append(msg.body.text)  # type: ignore[union-attr]
            finally:
                for ep in (sub, pub):
                    ep.close()
            return got, broker

    got, broker = run(go())
    assert got == ["good"]
    assert broker.errors["frames"] == 3
    assert broker.forwarded == 1
