"""The launcher with stand-in roles (tests/orchestrator/standin_role.py) and the real
simulated plant: processes, restarts, history, status and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.procs import alive_any, children
from tests.support.aio import run
from vpp.config import load
from vpp.config.models import SiteConfig
from vpp.drivers.pmu import fetch_config
from vpp.errors import VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher
from vpp.orchestrator.history import History
from vpp.orchestrator.launcher import Launcher
from vpp.orchestrator.site_status import SiteStatus

STANDIN = "tests.orchestrator.standin_role"
ROLES = {r: STANDIN for r in ("field", "campus", "grid", "market")}


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    # Spawning starts multiprocessing's resource tracker, which would otherwise live as
    # long as pytest: end it so that the test leaves no process behind.
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _process_per_role(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests kill and count one role's process: a process per role (the shared
    # default is tested in test_shared_process.py).
    monkeypatch.setenv("VPP__SUPERVISION__SHARED", "{}")


def tracker_pid() -> int | None:
    pid: int | None = resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    return pid


async def until(cond: Any, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_launcher_runs_restarts_records_and_stops(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    out = io.StringIO()
    launcher = Launcher(
        load(), history_path=db, modules=ROLES, out=out, as_json=True,
        status_interval_s=0.2, backoff_s=0.3,
    )  # fmt: skip
    stop = asyncio.Event()
    seen: dict[str, Any] = {}

    async def main() -> int:
        task = asyncio.create_task(launcher.run(None, stop))
        await until(launcher.ready.is_set, what="start")
        await until(lambda: launcher.status.snapshot({})["units_online"] == 3, what="units")
        table = launcher.process_table()
        assert set(table) == {"plant", "field-a", "field-b", "campus", "grid", "market", "api",
                              "scada"}  # fmt: skip
        assert all(p["alive"] for p in table.values())
        seen["pids"] = children(os.getpid())
        victim = table["campus"]["pid"]
        os.kill(victim, signal.SIGKILL)
        await until(lambda: launcher.procs["campus"].restarts == 1, what="restart")
        await until(lambda: launcher.procs["campus"].alive, what="campus back")
        assert launcher.procs["campus"].pid != victim
        assert launcher.procs["campus"].last_exit == -signal.SIGKILL
        assert sum(m.restarts for m in launcher.procs.values()) == 1
        seen["pids"] |= children(os.getpid())
        new = f'"pid": {launcher.procs["campus"].pid}'
        with History(db).session() as h:
            await until(
                lambda: any(new in e["text"] for e in h.rows("events", where={"kind": "standin"})),
                what="the new campus on the bus (in the history)",
            )
        stop.set()
        return await task

    assert run(main(), timeout=60) == 0
    assert len(seen["pids"]) >= 7  # six roles and the restarted campus (+ helpers)
    assert not alive_any(seen["pids"] - {tracker_pid()}), "a child outlived the launcher"
    # The plant's ports went to the roles: the stand-ins report the PMU port they got.
    assert launcher.ports["pmu"] > 0 and launcher.site.field[0].pmu.port == launcher.ports["pmu"]

    h = History(db)
    try:
        tel = h.rows("telemetry")
        assert {r["unit"] for r in tel} == {"bess-1", "bess-2", "bess-3"}
        assert {r["power_kw"] for r in tel if r["unit"] == "bess-2"} == {20.0}
        cmds = h.rows("commands", where={"command": "hello"})
        assert {r["target"] for r in cmds} >= {"field-a", "field-b", "campus", "grid", "market"}
        # Recorded from the command servers of the topology, each as the sender.
        assert all(r["ok"] == 1 and r["identity"] == "standin" for r in cmds)
        assert all(r["server"] == r["target"] for r in cmds)
        events = h.rows("events")
        standin = [json.loads(e["text"]) for e in events if e["kind"] == "standin"]
        assert {e["pmu_port"] for e in standin} == {launcher.ports["pmu"]}
        proc = [e for e in events if e["kind"] == "process" and e["source"] == "launcher"]
        assert [e["severity"] for e in proc] == ["alarm", "warning"]
        assert "campus exited with code -9" in proc[0]["text"]
    finally:
        h.close()

    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines, "no status lines"
    last = lines[-1]
    assert last["units_online"] == 3
    # Stand-ins report 10, 20 and 10 kW (bess-3 is field-b's first unit).
    assert last["fleet_kw"] == 40.0
    assert last["fleet_soc_pct"] == 50.0
    assert last["processes"]["campus"]["restarts"] == 1
    assert last["processes"]["campus"]["deaths"] == 1


def test_a_restarted_plant_serves_on_the_same_ports(tmp_path: Path) -> None:
    launcher = Launcher(load(), history_path=tmp_path / "h.db", modules=ROLES, backoff_s=0.2)
    stop = asyncio.Event()

    async def main() -> tuple[int, int]:
        task = asyncio.create_task(launcher.run(None, stop))
        try:
            await until(launcher.ready.is_set, what="start")
            port = launcher.ports["pmu"]
            first = await fetch_config("127.0.0.1", port)
            pid = launcher.procs["plant"].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await until(lambda: launcher.procs["plant"].restarts == 1, what="plant restart")
            # The field controllers keep their addresses: the new plant binds the same port.
            deadline = time.monotonic() + 20
            while True:
                try:
                    again = await fetch_config("127.0.0.1", port)
                    break
                except (OSError, VppError):
                    assert time.monotonic() < deadline, "the plant did not come back"
                    await asyncio.sleep(0.2)
            return first.idcode, again.idcode
        finally:
            stop.set()
            assert await task == 0

    assert run(main(), timeout=60) == (7734, 7734)


# ---- supervised background loops (issue 8) ----


def bus_only_site(tmp_path: Path) -> SiteConfig:
    """The default site without its plant, for a launcher that runs only the broker: the
    test publishes on the bus itself, as several processes at once, so the bus has no
    identities (``insecure``; the authenticated bus is tested in test_attacks.py)."""
    site = load()
    return site.model_copy(update={
        "bus": site.bus.model_copy(update={"insecure": True}),
        "simulation": site.simulation.model_copy(update={"enabled": False}),
        "history": site.history.model_copy(update={"flush_interval_s": 0.1}),
    })  # fmt: skip


def tel(unit: str, kw: float) -> s.Message:
    limits = s.Limits(p_min_kw=-100.0, p_max_kw=100.0)
    return s.make(s.Telemetry(unit=unit, p_kw=kw, soc_pct=50.0, temp_c=25.0, limits=limits),
                  "field-a")  # fmt: skip


def dispatch(target_kw: object) -> s.Message:
    return s.make(s.Event(kind="dispatch", data={"target_kw": target_kw}), "campus")


@contextlib.asynccontextmanager
async def running(launcher: Launcher) -> AsyncIterator[Publisher]:
    """The launcher running, with a publisher it has heard. Stopped and waited for on
    leaving, even when the test failed, so nothing outlives it; it must exit with 0."""
    stop = asyncio.Event()
    task = asyncio.create_task(launcher.run(None, stop))
    pub: Publisher | None = None
    try:
        await until(launcher.ready.is_set, what="start")
        assert launcher.topo is not None
        pub = Publisher(launcher.topo.events_in, bind=False)
        # A PUB socket drops what it sends before its connection is up: hello until heard.
        while launcher.status.messages == 0:
            await pub.publish(s.make(s.Event(kind="hello"), "test"))
            await asyncio.sleep(0.05)
        yield pub
    finally:
        if pub is not None:
            pub.close()
        stop.set()
        code = await task
    assert code == 0


def recorded(db: Path, table: str, **where: object) -> list[dict[str, Any]]:
    with History(db).session() as h:
        return h.rows(table, where=where)


class RendersBadly(SiteStatus):
    """The real status, whose snapshot raises while ``broken`` is set."""

    def __init__(self, site: SiteConfig) -> None:
        super().__init__(site)
        self.broken = False

    def snapshot(self, processes: Any) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("a bug in the status")
        return super().snapshot(processes)


def test_a_failing_status_loop_is_restarted_and_counted(tmp_path: Path) -> None:
    # The status loop used to die at its first failure, and no status came again.
    out = io.StringIO()
    db = tmp_path / "h.db"
    site = bus_only_site(tmp_path)
    launcher = Launcher(site, history_path=db, out=out, only=["broker"],
                        status_interval_s=0.05, loop_restart_s=0.05)  # fmt: skip
    status = launcher.status = RendersBadly(site)

    async def main() -> None:
        async with running(launcher) as pub:
            status.broken = True
            await until(lambda: launcher.loop_failures["show"] >= 2, what="show failures")
            status.broken = False
            await pub.publish(dispatch(12.5))
            mark = len(out.getvalue())
            await until(lambda: "+12.5 kW" in out.getvalue()[mark:], what="status again")
            # An odd value in a message shows as missing (it once broke the rendering).
            await pub.publish(dispatch("lots"))
            mark = len(out.getvalue())
            await until(lambda: "target - kW" in out.getvalue()[mark:], what="odd target")
            await pub.publish(tel("bess-1", 7.0))
            await until(lambda: recorded(db, "telemetry", unit="bess-1"), what="history")

    run(main(), timeout=30)
    assert set(launcher.loop_failures) == {"show"}
    assert len(recorded(db, "events", kind="dispatch")) == 2


class FailsOnce(SiteStatus):
    """The real status, whose update raises on the first message of kind ``boom``."""

    def __init__(self, site: SiteConfig) -> None:
        super().__init__(site)
        self.failed = False

    def update(self, msg: s.Message) -> None:
        super().update(msg)
        if isinstance(msg.body, s.Event) and msg.body.kind == "boom" and not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the status")


def test_a_failing_listen_loop_is_restarted_and_loses_no_message(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    site = bus_only_site(tmp_path)
    launcher = Launcher(site, history_path=db, only=["broker"], loop_restart_s=0.05)
    launcher.status = FailsOnce(site)

    async def main() -> None:
        async with running(launcher) as pub:
            # One burst: the failing message and those after it arrive in one batch.
            await pub.publish(s.make(s.Event(kind="boom"), "test"))
            for k in range(5):
                await pub.publish(tel("bess-2", float(k)))
            await until(lambda: len(recorded(db, "telemetry", unit="bess-2")) == 5,
                        what="the burst in the history")  # fmt: skip
            await pub.publish(tel("bess-3", 1.0))
            await until(lambda: recorded(db, "telemetry", unit="bess-3"), what="history after")

    run(main(), timeout=30)
    assert launcher.loop_failures == {"listen": 1}
    assert len(recorded(db, "events", kind="boom")) == 1
    assert launcher.status.units["bess-3"].p_kw == 1.0


def test_a_failing_flush_is_restarted_and_the_rows_written_later(tmp_path: Path) -> None:
    # The history file is held by another writer past the busy timeout (5 s): the flush
    # fails for real. The rows are kept, the loop restarted, and all are written after.
    db = tmp_path / "h.db"
    launcher = Launcher(bus_only_site(tmp_path), history_path=db, only=["broker"],
                        loop_restart_s=0.05)  # fmt: skip

    async def main() -> None:
        async with running(launcher) as pub:
            other = sqlite3.connect(db, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                await pub.publish(tel("bess-1", 1.0))
                await until(lambda: launcher.loop_failures["flush"] >= 1, what="a failed flush")
                other.execute("ROLLBACK")
                await pub.publish(tel("bess-1", 2.0))
                await until(lambda: len(recorded(db, "telemetry", unit="bess-1")) == 2,
                            what="the kept and the new row")  # fmt: skip
            finally:
                if other.in_transaction:
                    other.execute("ROLLBACK")
                other.close()

    run(main(), timeout=40)
    assert set(launcher.loop_failures) == {"flush"}
    assert [r["power_kw"] for r in recorded(db, "telemetry", unit="bess-1")] == [1.0, 2.0]
