"""The launcher with stand-in roles (tests/orchestrator/standin_role.py) and the real
simulated plant: processes, restarts, history, status and a clean stop."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.procs import alive_any, children
from tests.support.aio import run
from vpp.config import load
from vpp.drivers.pmu import fetch_config
from vpp.errors import VppError
from vpp.orchestrator.history import History
from vpp.orchestrator.launcher import Launcher

STANDIN = "tests.orchestrator.standin_role"
ROLES = {r: STANDIN for r in ("field", "campus", "grid", "market")}


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    # Spawning starts multiprocessing's resource tracker, which would otherwise live as
    # long as pytest: end it so that the test leaves no process behind.
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


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
        assert set(table) == {"plant", "field-a", "field-b", "campus", "grid", "market"}
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
        assert all(r["ok"] == 1 and r["issued_by"] == "standin" for r in cmds)
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
