"""``vpp run`` under systemd (issue 14): READY=1 once started, WATCHDOG=1 only while every
field controller of the host keeps deciding, STOPPING=1 at the end; a real datagram
socket stands where systemd listens (sd_notify(3))."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from tests.support.aio import run
from vpp.config import load
from vpp.orchestrator.launcher import Launcher
from vpp.orchestrator.sdnotify import Notifier


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    # The site's spawns start multiprocessing's resource tracker: end it with the test.
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


def _listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[tuple[float, str]]:
    out = []
    while True:
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except BlockingIOError:
            return out


def test_the_notifier_takes_its_settings_out_of_the_environment(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = _listen(path)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier(env)
    assert env == {}  # the site's processes do not inherit them
    assert n.enabled and n.watchdog_s == 3.0
    assert n.notify("READY=1", "STATUS=running")
    assert sock.recv(100) == b"READY=1\nSTATUS=running"
    # Another process's watchdog (WATCHDOG_PID) is not ours; no socket: nothing is sent.
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}
                    ).watchdog_s is None  # fmt: skip
    assert not Notifier({}).notify("READY=1")
    # A socket that is gone is counted, not raised.
    sock.close()
    os.unlink(path)
    assert not n.notify("WATCHDOG=1") and n.failed == 1


def test_an_abstract_notify_socket_is_reached() -> None:
    name = f"vpp-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    with sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_the_watchdog_stops_while_a_field_controller_is_stuck(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = _listen(path)
    os.environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")  # pings every 1 s
    try:
        launcher = Launcher(load(), history_path=tmp_path / "h.db")
    finally:
        os.environ.pop("NOTIFY_SOCKET", None)
        os.environ.pop("WATCHDOG_USEC", None)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(launcher.run(None, stop))
        got: list[tuple[float, str]] = []

        async def collect(seconds: float) -> list[str]:
            end = time.monotonic() + seconds
            new: list[str] = []
            while time.monotonic() < end:
                batch = _drain(sock)
                got.extend(batch)
                new += [m for _, m in batch]
                await asyncio.sleep(0.05)
            return new

        try:
            while not launcher.ready.is_set():
                assert not task.done()
                await asyncio.sleep(0.05)
            first = await collect(4.0)
            assert first[0].startswith("READY=1")
            assert first.count("WATCHDOG=1") >= 3, first
            pid = launcher.procs["field-a"].pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)  # alive, its loop stuck
            try:
                await collect(3.0)  # the last decisions age past the window
                stuck = await collect(3.0)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert "WATCHDOG=1" not in stuck, stuck
            assert any(m.startswith("STATUS=no decision from bess-1, bess-2") for m in stuck)
            assert launcher.watchdog_withheld >= 2
            back = await collect(4.0)
            assert back.count("WATCHDOG=1") >= 2, back
        finally:
            stop.set()
            assert await task == 0
        assert _drain(sock)[-1][1] == "STOPPING=1"

    try:
        run(main(), timeout=90)
    finally:
        sock.close()
