"""Faults on the whole simulated site run by the launcher (real plant, field controllers,
campus, grid and market processes): a service killed with SIGKILL, a field controller
killed. What the bus carries is read by a subscriber of the test on the events broker."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

from tests.support.aio import run
from vpp.config import load
from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Client, Subscriber
from vpp.orchestrator.launcher import Launcher

UNITS = {"bess-1", "bess-2", "bess-3"}
#: The field controller's default: no admitted frame for this long, the stream is lost.
PMU_STALE_S = 0.5


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    # Spawning starts multiprocessing's resource tracker, which would otherwise live as
    # long as pytest: end it so that the test leaves no process behind.
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


def site(**sections: Any) -> SiteConfig:
    """The default site, with a lasting loss of 10 % of its area at 2 s: the frequency
    stays below the 49.90 Hz deadband, so every unit keeps a droop response while the
    test runs."""
    data: dict[str, Any] = load().model_dump(mode="json")
    loss = 0.1 * data["simulation"]["grid"]["base_mw"]
    data["simulation"]["events"] = [{"time_s": 2.0, "delta_mw": loss}]
    data["simulation"]["repeat_s"] = None
    for key, value in sections.items():
        data[key].update(value)
    return SiteConfig.model_validate(data)


@dataclass
class Seen:
    """Messages from the bus with their arrival time (monotonic)."""

    decisions: list[tuple[float, s.Decision]] = field(default_factory=list)
    events: list[tuple[float, s.EventMsg]] = field(default_factory=list)

    def since(self, t: float) -> list[s.Decision]:
        return [d for at, d in self.decisions if at >= t]

    def before(self, t: float) -> list[s.Decision]:
        return [d for at, d in self.decisions if at < t]

    def kind(self, kind: str, since: float = 0.0) -> list[s.EventMsg]:
        return [e for at, e in self.events if at >= since and e.body.kind == kind]


async def until(
    cond: Callable[[], bool], timeout: float = 30.0, what: str | Callable[[], str] = ""
) -> None:
    """Wait for ``cond()``; ``what`` (or what it returns) names it when it times out."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + (
            what if isinstance(what, str) else what())
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(cfg: SiteConfig, tmp: Path, **options: Any) -> AsyncIterator[
    tuple[Launcher, Seen]
]:
    """The site under a launcher, with a subscriber collecting decisions and events."""
    launcher = Launcher(cfg, history_path=tmp / "h.db", **options)
    stop = asyncio.Event()
    task = asyncio.create_task(launcher.run(None, stop))
    seen = Seen()
    watch: asyncio.Task[None] | None = None
    sub: Subscriber | None = None
    try:
        await until(lambda: launcher.ready.is_set() or task.done(), what="launcher start")
        assert launcher.topo is not None and not task.done()
        sub = launcher.topo.subscriber("viewer", ("decision/", "event/"))

        async def collect(sub: Subscriber) -> None:
            while True:
                for msg in await sub.recv_batch():
                    now = time.monotonic()
                    if isinstance(msg, s.DecisionMsg):
                        seen.decisions.append((now, msg.body))
                    elif isinstance(msg, s.EventMsg):
                        seen.events.append((now, msg))

        watch = asyncio.create_task(collect(sub))
        yield launcher, seen
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        if sub is not None:
            sub.close()
        stop.set()
        assert await task == 0


async def ask(launcher: Launcher, target: str, command: str, **params: Any) -> Any:
    assert launcher.topo is not None
    # As the site's operator: the launcher made the site's keys, the operator's among them.
    curve = launcher.topo.client_curve("operator", target)
    async with Client(launcher.topo.commands[target], curve=curve, timeout=2.0) as client:
        ack = await client.request(command, params)
    assert ack.ok, ack.error
    return ack.result


def responding(
    decisions: list[s.Decision], starting: bool = False, prior: Sequence[s.Decision] = ()
) -> set[str]:
    """Units whose decisions show a droop response to the frequency: below the deadband,
    the low band and a discharge response (> 0). ``starting``: a unit's decisions before
    its first response are passed over (its first frame starts the response's ramp at 0,
    and until its BMS's first telemetry the state of charge is unknown, which derates the
    droop to 0); from then on every decision must respond, except the first after a gap
    in the PMU stream of at least ``PMU_STALE_S``: the simulated PMU runs in the plant's
    Python process, which a restart's imports on two shared CPUs can starve, and a
    stream that is lost makes the field controller ramp the response down, as it must
    (docs/pipeline.md); the next frame starts the ramp again from there. ``prior``: the
    decisions before ``decisions``, not checked but telling when each unit's last frame
    came (a gap can end just inside a window of time that ``decisions`` is)."""
    ok = set()
    last = {d.unit: d.t for d in prior if d.hz is not None and math.isfinite(d.hz)}
    for d in decisions:
        if d.hz is None or not math.isfinite(d.hz):
            continue  # a step without a measurement (the stream lost)
        gap, last[d.unit] = d.t - last.get(d.unit, d.t), d.t
        if d.hz < 49.89:
            if starting and d.unit not in ok and d.response_kw == 0:
                continue
            if gap >= PMU_STALE_S and d.response_kw == 0:
                continue
            assert d.response_kw > 0, _history(decisions, d.unit)
            assert d.band in ("low", "critical_low"), d
            ok.add(d.unit)
    return ok


def _history(decisions: list[s.Decision], unit: str) -> str:
    """The unit's decisions, one a line: what a failed check shows."""
    return "\n".join(f"{x.t:.2f} {x.hz:.3f} Hz response {x.response_kw:.1f} base "
                     f"{x.base_kw:.1f} setpoint {x.setpoint_kw:.1f} {x.action}"
                     for x in decisions if x.unit == unit)  # fmt: skip


async def settled(launcher: Launcher, seen: Seen) -> None:
    """Every unit online at the campus, decisions with a response from each."""
    await until(lambda: responding(seen.since(0.0), starting=True) == UNITS, 40.0,
                "droop on every unit")  # fmt: skip
    # With a process per role, nine processes start on two CPUs: the campus can take
    # 15 s to come up after the field controllers' first decisions.
    await until(lambda: dispatched_to_all(seen, 0.0), 40.0,
                lambda: f"dispatch to 3 units; the last: {_last_dispatch(seen)}")  # fmt: skip


def _last_dispatch(seen: Seen) -> dict[str, Any] | None:
    dispatches = seen.kind("dispatch")
    return dict(dispatches[-1].body.data) if dispatches else None


def dispatched_to_all(seen: Seen, since: float) -> bool:
    """Whether a campus dispatch since ``since`` gave every unit a setpoint."""
    return any(set(e.body.data.get("setpoints", {})) == UNITS for e in seen.kind("dispatch", since))


# "services": the default, every service in one process; the others with a process per
# role (supervision.shared = {}).
@pytest.mark.parametrize("victim", ["services", "campus", "grid", "market"])
def test_a_killed_service_is_restarted_while_the_field_keeps_responding(
    victim: str, tmp_path: Path
) -> None:
    async def main() -> None:
        cfg = site() if victim == "services" else site(supervision={"shared": {}})
        async with running(cfg, tmp_path, backoff_s=2.0) as (launcher, seen):
            await settled(launcher, seen)
            pid = launcher.procs[victim].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            await until(lambda: launcher.procs[victim].restarts == 1, 20.0, "restart")
            restarted = time.monotonic()
            # While it was down (the 2 s backoff) the field controllers went on.
            down = [d for at, d in seen.decisions if killed < at < restarted]
            assert {d.unit for d in down} == UNITS
            assert responding(down, prior=seen.before(killed)) == UNITS
            # The safety envelope stayed in force and never had to stop a unit meanwhile.
            assert not [d for d in down if d.action in ("stop", "emergency_shutdown")]
            assert not [e for e in seen.kind("safety", killed) if e.body.severity in
                        ("alarm", "critical")]  # fmt: skip
            # The process came back and the campus has every unit online again.
            await until(lambda: launcher.procs[victim].alive, 10.0, "alive")
            t_back = time.monotonic()
            await until(lambda: dispatched_to_all(seen, t_back), 30.0, "dispatch after restart")
            fleet = await ask(launcher, "campus", "fleet")
            assert fleet["units"] == 3
            assert all(f["online"] for f in fleet["fields"].values())
            process = [e.body for e in seen.kind("process")]
            assert [e.severity for e in process] == ["alarm", "warning"]
            assert process[0].data["process"] == victim

    run(main(), timeout=150)


def test_a_killed_field_controller_goes_offline_and_its_share_moves(tmp_path: Path) -> None:
    cfg = site(market={"enabled": False})

    async def main() -> None:
        # A long backoff keeps field-b down long enough for the campus to notice.
        async with running(cfg, tmp_path, backoff_s=8.0) as (launcher, seen):
            await settled(launcher, seen)
            await ask(launcher, "campus", "set_target", kw=600.0, strategy="proportional")
            t_set = time.monotonic()

            def at_600() -> list[dict[str, Any]]:
                return [e.body.data for e in seen.kind("dispatch", t_set)
                        if e.body.data.get("target_kw") == 600.0]  # fmt: skip

            await until(lambda: bool(at_600()), 10.0, "a 600 kW dispatch")
            before = at_600()[-1]
            assert set(before["setpoints"]) == UNITS
            assert sum(before["setpoints"].values()) == pytest.approx(600.0, abs=1e-6)
            assert before["setpoints"]["bess-3"] > 0

            pid = launcher.procs["field-b"].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()

            def moved() -> dict[str, Any] | None:
                for e in seen.kind("dispatch", killed):
                    sp = e.body.data.get("setpoints", {})
                    if sp and sp.get("bess-3", 0.0) == 0.0:
                        return dict(e.body.data)
                return None

            await until(lambda: moved() is not None, 15.0, "dispatch without bess-3")
            after = moved()
            assert after is not None
            sp = after["setpoints"]
            # The 600 kW now come from field-a's two units.
            assert sp.get("bess-3", 0.0) == 0.0
            assert sp["bess-1"] + sp["bess-2"] == pytest.approx(600.0, abs=1e-6)
            assert sp["bess-1"] > before["setpoints"]["bess-1"]
            offline = [e.body for e in seen.kind("device", killed)
                       if e.body.data.get("field") == "field-b"]  # fmt: skip
            assert offline and offline[0].data.get("online") is False
            # field-a went on responding the whole time.
            assert responding(seen.since(killed), prior=seen.before(killed)) >= {"bess-1", "bess-2"}
            # After its backoff field-b is back, registers again and gets its share.
            await until(lambda: launcher.procs["field-b"].restarts == 1, 20.0, "restart")
            back = time.monotonic()

            def shared() -> bool:
                return any(e.body.data.get("setpoints", {}).get("bess-3", 0.0) > 0
                           for e in seen.kind("dispatch", back))  # fmt: skip

            await until(shared, 30.0, "bess-3 dispatched again")
            fleet = await ask(launcher, "campus", "fleet")
            assert fleet["fields"]["field-b"]["online"] is True

    run(main(), timeout=150)
