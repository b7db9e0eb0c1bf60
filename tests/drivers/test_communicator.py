"""ResourceCommunicator against real BESS simulators on loopback: acks, polling, outage
and recovery on the same port, failover to a secondary, a device that never answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.aio import free_port
from tests.support.devices import run, silent_server, wait_until
from vpp.aio import Backoff
from vpp.drivers.base import Status
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import DeviceOfflineError, ValidationError
from vpp.errors import ConfigError
from vpp.sim.bess import BessSimulator


def config(port: int, **extra: Any) -> dict[str, Any]:
    """A fast-failing Modbus TCP config for loopback ``port``."""
    return {"host": "127.0.0.1", "port": port, "timeout": 0.5, "retries": 0, **extra}


def communicator(**options: Any) -> ResourceCommunicator:
    """A communicator that polls every 50 ms and backs off at most 100 ms."""
    opts: dict[str, Any] = {
        "poll_interval": 0.05,
        "backoff": Backoff(initial=0.02, maximum=0.1),
    }
    opts.update(options)
    return ResourceCommunicator(**opts)


def test_command_ack_and_polling() -> None:
    async def main() -> None:
        comm = communicator()
        async with BessSimulator(port=0, ramp_kw_s=1e4) as sim:
            try:
                comm.add_resource("bess1", "modbus_tcp", config(sim.port))
                seen: list[Status] = []
                unsubscribe = comm.subscribe_to_resource("bess1", seen.append)
                await wait_until(lambda: len(seen) >= 2)
                for command, params in (
                    ("enable", {}),
                    ("set_mode", {"mode": "power_control"}),
                    ("set_power", {"kw": 100.0}),
                ):
                    ack = await comm.send_command("bess1", command, params, timeout=2.0)
                    assert ack.ok and 0 < ack.latency < 2.0
                await wait_until(lambda: bool(seen[-1]["active_power"] > 99.0))
                with pytest.raises(ValidationError, match="unknown command"):
                    await comm.send_command("bess1", "warp")
                state = comm.status()["bess1"]
                assert state["online"] is True and state["timestamp"] is not None
                health = comm.health()["bess1"]
                assert health["state"] == "connected" and health["p99"] is not None
                unsubscribe()
            finally:
                await comm.close()

    run(main)


def test_invalid_resource_config() -> None:
    comm = communicator()
    with pytest.raises(ConfigError) as info:
        comm.add_resource("bess1", "modbus_tcp", {"host": "127.0.0.1", "port": 0})
    assert info.value.field == "port"
    with pytest.raises(ConfigError) as info:
        comm.add_resource("bess1", "modbus_tcp", config(502), secondary={"port": 502})
    assert info.value.field == "host"


def test_outage_goes_offline_and_recovers_on_the_same_port() -> None:
    async def main() -> None:
        comm = communicator()
        port = free_port()
        sim = BessSimulator(port=port)
        await sim.start()
        try:
            comm.add_resource("bess1", "modbus_tcp", config(port))
            seen: list[Status] = []
            comm.subscribe_to_resource("bess1", seen.append)
            await wait_until(lambda: comm.status()["bess1"]["online"] is True)
            await sim.stop()
            await wait_until(lambda: comm.status()["bess1"]["online"] is False)
            errors = comm.health()["bess1"]["errors"]
            assert errors["connection"] + errors["timeout"] >= 1
            assert errors["connection"] >= 1
            # The cache keeps the last good status.
            assert comm.status()["bess1"]["status"] is not None
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(DeviceOfflineError, match="'bess1' is offline"):
                await comm.send_command("bess1", "enable")
            assert loop.time() - t0 < 0.05  # at once, not after a timeout
            sim = BessSimulator(port=port)
            await sim.start()
            n = len(seen)
            await wait_until(lambda: comm.status()["bess1"]["online"] is True)
            await wait_until(lambda: len(seen) > n)
            assert (await comm.send_command("bess1", "enable")).ok
        finally:
            await comm.close()
            await sim.stop()

    run(main)


def test_failover_to_secondary() -> None:
    async def main() -> None:
        comm = communicator(failover_after=2)
        async with BessSimulator(port=0, initial_soc_pct=42.0) as backup:
            try:
                comm.add_resource(
                    "bess1", "modbus_tcp", config(free_port()), secondary=config(backup.port)
                )
                seen: list[Status] = []
                comm.subscribe_to_resource("bess1", seen.append)
                await wait_until(lambda: len(seen) >= 1)
                assert seen[-1]["soc"] == pytest.approx(42.0)
                state = comm.status()["bess1"]
                assert state["active"] == "secondary" and state["online"] is True
                health = comm.health()["bess1"]
                assert health["failovers"] == 1 and health["errors"]["connection"] >= 2
            finally:
                await comm.close()

    run(main)


def test_silent_device_is_a_timeout_and_nothing_hangs() -> None:
    async def main() -> None:
        comm = communicator()
        async with silent_server() as port:
            try:
                comm.add_resource("slow", "modbus_tcp", config(port, timeout=0.2))
                comm.subscribe_to_resource("slow", lambda s: None)
                await wait_until(lambda: comm.health()["slow"]["errors"]["timeout"] >= 2)
                assert comm.status()["slow"]["online"] is False
                with pytest.raises(DeviceOfflineError):
                    await comm.send_command("slow", "enable")
            finally:
                await comm.close()

    run(main)


def test_callback_errors_do_not_stop_polling() -> None:
    async def main() -> None:
        comm = communicator()
        calls: list[int] = []

        def bad(status: Status) -> None:
            calls.append(1)
            raise RuntimeError("subscriber bug")

        async with BessSimulator(port=0) as sim:
            try:
                comm.add_resource("bess1", "modbus_tcp", config(sim.port))
                comm.subscribe_to_resource("bess1", bad)
                await wait_until(lambda: len(calls) >= 3)
            finally:
                await comm.close()

    run(main)


def test_unanswered_command_gives_a_failed_ack() -> None:
    async def main() -> None:
        comm = communicator()
        async with silent_server() as port:
            try:
                # The driver's own timeout fires first.
                comm.add_resource("a", "modbus_tcp", config(port, timeout=0.2))
                ack = await comm.send_command("a", "enable", timeout=2.0)
                assert not ack.ok and "no answer" in ack.detail and ack.latency < 1.0
                assert comm.health()["a"]["errors"]["timeout"] == 1
                with pytest.raises(DeviceOfflineError, match="'a' is offline"):
                    await comm.send_command("a", "enable")
                # The command's timeout fires first.
                comm.add_resource("b", "modbus_tcp", config(port, timeout=5.0))
                ack = await comm.send_command("b", "enable", timeout=0.2)
                assert not ack.ok and "no ack within 0.2 s" in ack.detail
                assert comm.status()["b"]["online"] is False
                # The cut-short request's connection is dropped, not reused.
                assert comm.health()["b"]["state"] == "disconnected"
            finally:
                await comm.close()

    run(main)


def test_close_while_polling_back_to_back_does_not_hang() -> None:
    # pymodbus awaits replies with asyncio.wait_for, which on Python 3.11 drops a
    # cancellation that arrives together with a reply; with busy loops that happens
    # often, and a close that cancelled once waited forever on a loop still polling.
    async def main() -> None:
        comm = communicator(poll_interval=1e-6)
        polls: dict[str, int] = {}
        async with BessSimulator(port=0) as sim:
            try:
                for i in range(30):
                    rid = f"bess{i}"
                    polls[rid] = 0
                    comm.add_resource(rid, "modbus_tcp", config(sim.port, timeout=2.0))
                    comm.subscribe_to_resource(
                        rid, lambda _s, rid=rid: polls.__setitem__(rid, polls[rid] + 1)
                    )
                await wait_until(lambda: min(polls.values()) >= 5)
            finally:
                await asyncio.wait_for(comm.close(), 10.0)
        assert comm.status() == {}

    run(main)
