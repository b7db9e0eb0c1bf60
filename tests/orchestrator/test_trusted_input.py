"""The campus and the grid service trust only the site configuration (issue 9).

Each attack of the issue is run against the services on real ZeroMQ sockets (a broker,
fake field controllers, an attacker's Publisher on the same events bus) and shown
refused, counted, and without effect on dispatch and allocation. A spoofed name is
simply a message whose ``sender`` is not the owner: on the authenticated bus that is the
sender the broker stamps from the publisher's key, which ``s.make(body, sender)``
stands in for here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.orchestrator.service_peers import Broker, FakeField, FakeUnit, site, topology, until
from tests.support.aio import run
from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.campus.service import Campus
from vpp.orchestrator.grid.service import GridService

UNITS = {"bess-1": "field-a", "bess-2": "field-a", "bess-3": "field-b"}
FLEET_KW = 1500.0  # three configured units of 500 kW
EVENTS = {"hold_s": 0.5, "rocof_threshold_hz_s": None}


def _tel(unit: str, *, limit: float = 500.0, safety: s.SafetyState = "none") -> s.Telemetry:
    return s.Telemetry(unit=unit, p_kw=0.0, soc_pct=50.0, temp_c=20.0, safety=safety,
                       limits=s.Limits(p_min_kw=-limit, p_max_kw=limit))  # fmt: skip


def _unit_hb(unit: str, owner: str, rated_kw: float = 500.0) -> s.Heartbeat:
    return s.Heartbeat(role="unit", id=unit, owner=owner, location="X/X/X/X/X/X",
                       capabilities=s.Capabilities(rated_kw=rated_kw, rated_kwh=1e6))  # fmt: skip


def _dated(msg: s.Message, dt: float) -> s.Message:
    """``msg`` with its envelope time moved by ``dt`` s."""
    return msg.model_copy(update={"ts": msg.ts + dt})


def _units() -> tuple[list[FakeUnit], list[FakeUnit]]:
    return [FakeUnit("bess-1"), FakeUnit("bess-2")], [FakeUnit("bess-3")]


@contextlib.asynccontextmanager
async def _site_running(
    cfg: SiteConfig, topo: Topology
) -> AsyncIterator[tuple[FakeField, FakeField, Campus, GridService, Publisher]]:
    """A broker, field-a (bess-1, bess-2), field-b (bess-3), the campus, the grid service
    and the attacker's publisher, all running and settled: the campus dispatching 300 kW
    (100 kW a unit), the grid sharing its obligation (1500 kW) by the headroom left above
    that base (400 kW a unit, 300 kW short)."""
    a, b = _units()
    with Broker(topo):
        pub = Publisher(topo.events_in, bind=False)
        try:
            async with (
                FakeField(topo, "field-a", a) as fa,
                FakeField(topo, "field-b", b) as fb,
                Campus(cfg, topo) as campus,
                GridService(cfg, topo, allocate_every_s=0.1) as grid,
            ):
                campus.target_kw = 300.0
                units = {**fa.units, **fb.units}
                await until(lambda: {**fa.bases(), **fb.bases()} == pytest.approx(
                    {"bess-1": 100.0, "bess-2": 100.0, "bess-3": 100.0}))  # fmt: skip
                await until(lambda: all(u.participation_kw == pytest.approx(400.0)
                                        for u in units.values()))  # fmt: skip
                yield fa, fb, campus, grid, pub
        finally:
            pub.close()


def _cfg(**sections: Any) -> SiteConfig:
    # The default obligation (the fleet's rating, 1500 kW), so that a unit claiming a
    # larger rating would show in it.
    return site(grid={"events": EVENTS}, **sections)


def _shares(fa: FakeField, fb: FakeField) -> dict[str, float | None]:
    return {u.id: u.participation_kw for u in [*fa.units.values(), *fb.units.values()]}


async def _rounds(campus: Campus, grid: GridService, n: int = 4) -> None:
    """Wait for ``n`` more campus rounds and grid allocations."""
    r0 = campus.rounds
    g0 = grid.allocation
    await until(lambda: campus.rounds >= r0 + n and grid.allocation is not g0)


def test_spoofed_telemetry_and_heartbeats_for_real_units_are_refused(ipc_dir: Path) -> None:
    # Before: telemetry for bess-3 claiming an emergency shutdown made the campus drop it
    # and move its share. Now only field-b speaks for bess-3: the same message from a
    # stranger or from field-a (a real field controller, not its owner) is refused.
    cfg = _cfg()
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with _site_running(cfg, topo) as (fa, fb, campus, grid, pub):
            assert campus.last is not None and grid.allocation is not None
            setpoints, shares = dict(campus.last.setpoints), _shares(fa, fb)
            obligation = grid.obligation_kw()
            assert obligation == FLEET_KW
            attack = [
                s.make(_tel("bess-3", limit=0.0, safety="emergency_shutdown"), "mallory"),
                s.make(_tel("bess-3", limit=0.0, safety="emergency_shutdown"), "field-a"),
                # Claims bess-3 for field-a (commands would go there) with a huge rating.
                s.make(_unit_hb("bess-3", "field-a", 1e9), "field-a"),
                s.make(_unit_hb("bess-1", "mallory", 1e9), "mallory"),
            ]
            r0 = campus.rounds
            while campus.rounds < r0 + 5:
                for m in attack:
                    await pub.publish(m)
                await asyncio.sleep(0.02)
            assert campus.errors["not_owner"] >= 20 and grid.errors["not_owner"] >= 20
            await _rounds(campus, grid)
            assert campus.last.setpoints == pytest.approx(setpoints)
            assert campus.last.excluded == {}
            assert {**fa.bases(), **fb.bases()} == pytest.approx(setpoints)
            assert grid.allocation.excluded == {} and _shares(fa, fb) == shares
            assert grid.obligation_kw() == obligation
            # The owner's own heartbeat claiming a larger rating changes nothing either:
            # ratings come from the configuration.
            await pub.publish(s.make(_unit_hb("bess-1", "field-a", 1e9), "field-a"))
            await _rounds(campus, grid)
            assert grid.obligation_kw() == FLEET_KW
            assert campus.fleet.rated_discharge[campus.fleet.slot("bess-1")] == 500.0

    run(go(), timeout=40)


def test_heartbeat_endpoint_never_redirects_commands(ipc_dir: Path) -> None:
    # Before: a heartbeat for field-b naming another endpoint sent every later set_base
    # there (and each round timed out). Now commands go to the topology's endpoints only,
    # whoever sends the heartbeat, and no socket is opened for another name.
    cfg = _cfg()
    topo = topology(cfg, ipc_dir)
    bogus = f"ipc://{ipc_dir}/nowhere"

    async def go() -> None:
        async with _site_running(cfg, topo) as (_, fb, campus, grid, pub):
            attack = [
                s.make(s.Heartbeat(role="field", id="field-b", endpoint=bogus), "mallory"),
                s.make(s.Heartbeat(role="field", id="field-b", endpoint=bogus), "field-a"),
                # field-b itself (authenticated) naming another endpoint: not used either.
                s.make(s.Heartbeat(role="field", id="field-b", endpoint=bogus), "field-b"),
                s.make(s.Heartbeat(role="field", id="evil", endpoint=bogus), "evil"),
            ]
            r0 = campus.rounds
            while campus.rounds < r0 + 4:
                for m in attack:
                    await pub.publish(m)
                await asyncio.sleep(0.02)
            assert campus.errors["not_owner"] >= 8 and campus.errors["unknown_field"] >= 4
            # Commands still reach field-b: a new target moves its unit.
            campus.target_kw = 900.0
            await until(lambda: fb.bases()["bess-3"] == pytest.approx(300.0))
            assert campus.errors["command_timeout"] == 0 and grid.errors["command_timeout"] == 0
            assert campus.fields["field-b"].endpoint == topo.commands["field-b"]
            assert set(campus.fields) == {"field-a", "field-b"}
            for svc in (campus, grid):
                clients = {t: c.endpoint for t, c in svc._clients.items()}
                assert clients == {t: topo.commands[t] for t in clients}
                assert set(clients) <= {"field-a", "field-b"}

    run(go(), timeout=40)


def test_messages_dated_far_from_receipt_are_refused(ipc_dir: Path) -> None:
    # The owner's own messages, dated a minute ahead or two minutes back: refused and
    # counted, and what they claim (bess-3 shut down) changes nothing.
    cfg = _cfg()
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with _site_running(cfg, topo) as (fa, fb, campus, grid, pub):
            assert campus.last is not None
            setpoints, shares = dict(campus.last.setpoints), _shares(fa, fb)
            stop = _tel("bess-3", limit=0.0, safety="emergency_shutdown")
            r0 = campus.rounds
            while campus.rounds < r0 + 4:
                await pub.publish(_dated(s.make(stop, "field-b"), 60.0))
                await pub.publish(_dated(s.make(stop, "field-b"), -120.0))
                await asyncio.sleep(0.02)
            for svc in (campus, grid):
                assert svc.errors["future"] >= 4 and svc.errors["stale"] >= 4
            await _rounds(campus, grid)
            assert campus.last.setpoints == pytest.approx(setpoints)
            assert _shares(fa, fb) == shares

    run(go(), timeout=40)


def test_a_future_frequency_sample_does_not_hide_the_real_ones(ipc_dir: Path) -> None:
    # Before: one sample dated in the future made every real sample after it look old,
    # and they were all dropped as duplicates. Now it is refused, and so are samples from
    # a sender that is not a field controller.
    cfg = site(grid={"obligation_kw": 600.0, "events": EVENTS})
    topo = topology(cfg, ipc_dir)
    hz = [50.0]

    async def pmu(pub: Publisher) -> None:
        while True:
            f = hz[0]
            band = "normal" if 49.9 <= f <= 50.05 else "low"
            await pub.publish(s.make(s.Frequency(hz=f, band=band, t=time.time()), "field-a"))
            await asyncio.sleep(0.02)

    async def go() -> None:
        with Broker(topo):
            pmu_pub = Publisher(topo.events_in, bind=False)
            pub = Publisher(topo.events_in, bind=False)
            task = asyncio.create_task(pmu(pmu_pub))
            try:
                async with GridService(cfg, topo) as grid:
                    await until(lambda: len(grid.frequency.samples) >= 5)
                    end = time.monotonic() + 10.0
                    while grid.errors["future"] < 3 or grid.errors["unknown_sender"] < 3:
                        assert time.monotonic() < end, grid.errors
                        now = time.time()
                        low = s.Frequency(hz=49.0, band="low", t=now + 3600.0)
                        await pub.publish(s.make(low, "field-a"))
                        await pub.publish(s.make(low.model_copy(update={"t": now - 3600.0}),
                                                 "field-b"))  # fmt: skip
                        await pub.publish(s.make(low.model_copy(update={"t": now}), "mallory"))
                        await asyncio.sleep(0.05)
                    assert grid.errors["stale"] >= 3
                    n = len(grid.frequency.samples)
                    await until(lambda: len(grid.frequency.samples) >= n + 20)
                    assert grid.duplicates == 0
                    assert grid.detector.active is None  # the spoofed 49 Hz started nothing
                    assert max(t for t, _ in grid.frequency.samples) < time.time() + 1.0
                    hz[0] = 49.5  # a real dip is seen at once
                    await until(lambda: grid.detector.active is not None)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                pmu_pub.close()
                pub.close()

    run(go(), timeout=40)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


FLOOD = 10_000


def _fake(i: int, ipc_dir: Path) -> list[s.Message]:
    """Everything a made-up unit ``fake-i`` and field controller ``ff-i`` can say."""
    uid, fid, now = f"fake-{i}", f"ff-{i}", time.time()
    dec = s.Decision(unit=uid, t=now, hz=50.0, response_kw=0.0, base_kw=0.0, setpoint_kw=0.0)
    return [
        s.make(s.Heartbeat(role="field", id=fid, endpoint=f"ipc://{ipc_dir}/{fid}"), fid),
        s.make(_unit_hb(uid, fid), fid),
        s.make(_tel(uid), fid),
        s.make(dec, fid),
        s.make(s.Frequency(hz=49.0, band="low", t=now + 1.0), fid),
    ]


def test_a_flood_of_fake_ids_leaves_state_and_descriptors_bounded(
    ipc_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: 10,000s of fake ids grew campus and grid memory to hundreds of MB, opened a
    # socket per fake endpoint until "too many open files", and took the obligation from
    # 1.5 MW to 81 MW. Now every message is refused and counted, nothing per fake id is
    # kept, no socket is opened, and dispatch and allocation go on unchanged.
    cfg = _cfg()
    topo = topology(cfg, ipc_dir)
    caplog.set_level(logging.WARNING, "vpp.orchestrator.bus.liveness")

    def refused(svc: Campus | GridService) -> int:
        kinds = ("unknown_unit", "unknown_field", "unknown_sender", "not_owner")
        return sum(svc.errors[k] for k in kinds)

    async def go() -> dict[str, Any]:
        async with _site_running(cfg, topo) as (fa, fb, campus, grid, pub):
            assert campus.last is not None
            setpoints, shares = dict(campus.last.setpoints), _shares(fa, fb)
            # The attacker's publisher is connected: the flood is not lost to the join.
            while refused(campus) == 0 or refused(grid) == 0:
                await pub.publish(s.make(_tel("ghost"), "ghost"))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # the last of those counted too
            fds, rss = _open_fds(), _rss_kb()
            c0, g0 = refused(campus), refused(grid)
            chunk = 100
            for start in range(0, FLOOD, chunk):
                for i in range(start, start + chunk):
                    for m in _fake(i, ipc_dir):
                        await pub.publish(m)
                # Paced, so that no queue on the way drops any: every message is counted.
                done = start + chunk
                await until(lambda d=done: refused(campus) >= c0 + 3 * d
                            and refused(grid) >= g0 + 5 * d, timeout=20)  # fmt: skip
            await _rounds(campus, grid, 3)
            assert refused(campus) == c0 + 3 * FLOOD and refused(grid) == g0 + 5 * FLOOD
            assert campus.errors["unknown_field"] >= FLOOD
            assert grid.errors["unknown_sender"] >= FLOOD
            # State: configured ids only.
            assert len(campus.fleet) == 3 and campus.fleet.size == 3
            assert set(campus.fields) == {"field-a", "field-b"}
            assert set(grid.units) <= set(UNITS)
            assert grid.allocation is not None
            assert {u.unit_id for u in grid.allocation.units} <= set(UNITS)
            assert grid.obligation_kw() == FLEET_KW
            assert grid.allocation.allocated_kw <= FLEET_KW
            assert len(grid.frequency.samples) == 0  # no PMU here; the fakes' were refused
            for svc in (campus, grid):
                assert set(svc._clients) <= {"field-a", "field-b"}
                assert len(svc.roster._logged) <= svc.roster.log_senders + 1
            # Dispatch and allocation as before.
            assert campus.last.setpoints == pytest.approx(setpoints)
            assert _shares(fa, fb) == shares
            return {"fds": (fds, _open_fds()), "rss_kb": (rss, _rss_kb())}

    seen = run(go(), timeout=180)
    before, after = seen["fds"]
    assert after <= before + 2, seen  # no socket per fake endpoint
    rss_before, rss_after = seen["rss_kb"]
    # Message buffers come and go; nothing grows with the number of fake ids.
    assert rss_after - rss_before < 64 * 1024, seen
    # Logged once per kind and sender, up to each roster's bound, not per message.
    roster_lines = [r for r in caplog.records if r.name == "vpp.orchestrator.bus.liveness"]
    assert len(roster_lines) <= 2 * (256 + 1)
    assert len(caplog.records) < len(roster_lines) + 50


# ---- generated traffic, on the services' ingest (no sockets) ----

T0 = 1_700_000_000.0
SENDERS = ["field-a", "field-b", "mallory", "ff-1"]
UNIT_IDS = [*UNITS, "ghost", "fake-1"]


@st.composite
def _traffic(draw: st.DrawFn) -> list[tuple[float, s.Message, bool]]:
    """(receipt time, message, whether it is a real field controller's own) in order:
    real frequency samples every 20 ms from field-a, interleaved with generated messages
    of every type about real and fake ids, from real and fake senders, some dated far
    from their receipt."""
    out: list[tuple[float, s.Message, bool]] = []
    n = draw(st.integers(1, 60))
    for k in range(n):
        now = T0 + 0.02 * k
        real = s.Frequency(hz=50.0, band="normal", t=now)
        out.append((now, s.make(real, "field-a").model_copy(update={"ts": now}), True))
        for _ in range(draw(st.integers(0, 3))):
            sender = draw(st.sampled_from(SENDERS))
            unit = draw(st.sampled_from(UNIT_IDS))
            dt = draw(st.sampled_from([0.0, 0.0, 1.0, -10.0, 3600.0, -3600.0]))
            kind = draw(st.sampled_from(["tel", "unit_hb", "field_hb", "freq", "dec"]))
            body: s.Telemetry | s.Heartbeat | s.Frequency | s.Decision
            if kind == "tel":
                safety = draw(st.sampled_from(["none", "emergency_shutdown"]))
                body = _tel(unit, limit=draw(st.sampled_from([0.0, 500.0])), safety=safety)
            elif kind == "unit_hb":
                body = _unit_hb(unit, sender, draw(st.sampled_from([500.0, 1e9])))
            elif kind == "field_hb":
                body = s.Heartbeat(role="field", id=draw(st.sampled_from(SENDERS)),
                                   endpoint="ipc:///tmp/elsewhere")  # fmt: skip
            elif kind == "freq":
                # Not ahead within the tolerance: a field controller's sample up to
                # max_future_s ahead is taken as it says (the window is the defence).
                fdt = dt if dt <= 0 or dt > 5.0 else 0.0
                body = s.Frequency(hz=49.0, band="low", t=now + fdt)
            else:
                body = s.Decision(unit=unit, t=now + dt, hz=50.0, response_kw=0.0, base_kw=0.0,
                                  setpoint_kw=0.0)  # fmt: skip
            msg = s.make(body, sender).model_copy(update={"ts": now + dt})
            out.append((now, msg, False))
    return out


def _owner_ok(msg: s.Message) -> bool:
    """The rule, written out independently of the Roster."""
    if isinstance(msg, (s.TelemetryMsg, s.DecisionMsg)):
        return UNITS.get(msg.body.unit) == msg.sender
    if isinstance(msg, s.HeartbeatMsg):
        hb = msg.body
        if hb.role == "unit":
            return UNITS.get(hb.id) == msg.sender
        return hb.id in UNITS.values() and msg.sender == hb.id
    if isinstance(msg, s.FrequencyMsg):
        return msg.sender in UNITS.values()
    return True


@settings(max_examples=60, deadline=None)
@given(traffic=_traffic())
def test_generated_traffic_never_creates_unknown_state(
    traffic: list[tuple[float, s.Message, bool]],
) -> None:
    cfg = site(grid={"events": EVENTS})
    topo = topology(cfg, Path("/tmp/vpp-never-bound"))
    campus, grid = Campus(cfg, topo, clock=lambda: now), GridService(cfg, topo, clock=lambda: now)
    now = T0
    for svc in (campus, grid):
        svc.roster.clock = lambda: now

    async def feed() -> None:
        nonlocal now
        for t, msg, _ in traffic:
            now = t
            campus.ingest([msg], now)
            await grid.on_message([msg])

    asyncio.run(feed())
    window = [m for t, m, _ in traffic if -30.0 <= m.ts - t <= 5.0
              and -30.0 <= getattr(m.body, "t", m.ts) - t <= 5.0]  # fmt: skip
    admitted = [m for m in window if _owner_ok(m)]
    # Every refusal counted, by the rule written out above.
    kinds = ("future", "stale", "unknown_unit", "unknown_field", "unknown_sender", "not_owner")
    campus_msgs = [m for _, m, _ in traffic if isinstance(m, (s.TelemetryMsg, s.HeartbeatMsg))]
    campus_ok = [m for m in admitted if isinstance(m, (s.TelemetryMsg, s.HeartbeatMsg))]
    assert sum(campus.errors[k] for k in kinds) == len(campus_msgs) - len(campus_ok)
    assert sum(grid.errors[k] for k in kinds) == len(traffic) - len(admitted)
    # State holds configured ids only, and only those their owners spoke for.
    spoken = {m.body.unit if isinstance(m, s.TelemetryMsg) else m.body.id for m in campus_ok
              if not (isinstance(m, s.HeartbeatMsg) and m.body.role == "field")}  # fmt: skip
    assert {campus.fleet.unit_id(i) for i in range(campus.fleet.size)} == spoken
    assert set(campus.fields) <= set(UNITS.values())
    assert set(grid.units) <= set(UNITS)
    assert grid.obligation_kw() <= FLEET_KW
    grid.reallocate(now)
    if grid.allocation is not None:
        assert {u.unit_id for u in grid.allocation.units} <= set(UNITS)
        assert grid.allocation.allocated_kw <= FLEET_KW + 1e-6
    # Every real frequency sample went in, whatever came between them.
    real = [m.body.t for _, m, own in traffic if own and isinstance(m, s.FrequencyMsg)]
    assert [t for t, _ in grid.frequency.samples] == real
