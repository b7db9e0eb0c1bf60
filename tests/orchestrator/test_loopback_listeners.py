"""Every socket a default-site run opens (``vpp run``'s launcher, the simulated plant,
the field controllers and the services) is bound to loopback, read from /proc while
the site runs (no mocks: the real processes of the default site)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from tests.orchestrator.procs import children
from tests.support.aio import run
from tests.support.net import InetSocket, inet_sockets
from vpp.config import load
from vpp.drivers.can_bus import UDP_INTERFACES
from vpp.orchestrator.launcher import Launcher


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    # Spawning starts multiprocessing's resource tracker: end it with the test.
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


def sockets_of_the_run() -> dict[int, list[InetSocket]]:
    """pid -> inet sockets, for this process (the launcher) and all its descendants."""
    pids = {os.getpid(), *children(os.getpid())}
    return {pid: inet_sockets(pid) for pid in pids}


def test_every_listener_of_the_default_site_binds_loopback(tmp_path: Path) -> None:
    site = load()
    groups = {
        str(u.bms.config["channel"]) for u in site.units()
        if u.bms is not None and u.bms.config.get("interface") in UDP_INTERFACES
    }  # fmt: skip
    assert groups, "the default site has no simulated CAN bus"
    launcher = Launcher(site, history_path=tmp_path / "h.db")
    stop = asyncio.Event()

    async def main() -> dict[int, list[InetSocket]]:
        task = asyncio.create_task(launcher.run(None, stop))
        try:
            deadline = time.monotonic() + 40
            while not launcher.ready.is_set():
                assert time.monotonic() < deadline, "the site did not start"
                await asyncio.sleep(0.1)
            bms_ports = {p for name, p in launcher.ports.items() if name.endswith("/bms")}
            assert len(bms_ports) == 3
            # Wait until each BMS bus is open in the plant and in a field controller.
            while True:
                seen = sockets_of_the_run()
                holders = {
                    port: sum(any(s.port == port and s.proto == "udp" for s in socks)
                              for socks in seen.values())
                    for port in bms_ports
                }  # fmt: skip
                if all(n >= 2 for n in holders.values()):
                    return seen
                assert time.monotonic() < deadline, f"BMS buses not all open: {holders}"
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            assert await task == 0

    seen = run(main(), timeout=60)
    tcp_ports = {p for name, p in launcher.ports.items() if not name.endswith("/bms")}
    listening = {(s.proto, s.port) for socks in seen.values() for s in socks if s.listening}
    # The check saw the plant's servers: the PMU and each BESS's Modbus TCP.
    assert {("tcp", p) for p in tcp_ports} <= listening
    for pid, socks in seen.items():
        for s in socks:
            where = f"pid {pid}: {s}"
            if s.proto.startswith("udp") and s.host in groups:
                # A simulated CAN bus: bound to its group, joined on loopback only
                # (tests/drivers/test_can_bus.py sends to it from elsewhere).
                continue
            assert ipaddress.ip_address(s.host).is_loopback, where
