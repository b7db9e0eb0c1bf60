"""``vpp sim bess`` run as a user runs it (a subprocess), read with the drivers."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.support.devices import run
from tests.support.ptylink import pty_link
from vpp.drivers.factory import ProtocolFactory

ROOT = Path(__file__).resolve().parents[2]


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``vpp sim bess ARGS``; the process and its "serving ..." line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vpp", "sim", "bess", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stderr is not None
    line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
    if "serving" not in line:
        proc.kill()
        await proc.wait()
        pytest.fail(f"vpp sim bess did not start: {line!r}")
    return proc, line


async def stop(proc: asyncio.subprocess.Process, sig: int) -> tuple[int, str]:
    """Send ``sig``; the exit code and the rest of stderr."""
    proc.send_signal(sig)
    assert proc.stderr is not None
    rest = (await asyncio.wait_for(proc.stderr.read(), 20)).decode()
    return await asyncio.wait_for(proc.wait(), 20), rest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sim_bess_over_tcp_is_read_and_commanded_then_stops_cleanly(sig: int) -> None:
    async def main() -> None:
        proc, line = await start(
            "--port", "0", "--device-id", "3", "--capacity-kwh", "200",
            "--rated-power-kw", "80", "--soc", "65", "--ramp-kw-s", "1000",
        )  # fmt: skip
        try:
            port = int(line.split("127.0.0.1:")[1].split(",")[0])
            assert "device id 3" in line
            proto = ProtocolFactory().create(
                "modbus_tcp", {"host": "127.0.0.1", "port": port, "device_id": 3}
            )
            try:
                status = await proto.read_status()
                assert status["soc"] == pytest.approx(65.0)
                assert status["rated_power"] == pytest.approx(80.0)
                assert status["rated_energy"] == pytest.approx(200.0)
                for command, params in (
                    ("enable", {}),
                    ("set_mode", {"mode": "power_control"}),
                    ("set_power", {"kw": 500.0}),  # beyond the rating: clamped to 80
                ):
                    assert (await proto.send_command(command, params)).ok
                for _ in range(100):
                    status = await proto.read_status()
                    if float(status["active_power"]) >= 79.9:
                        break
                    await asyncio.sleep(0.05)
                assert status["active_power"] == pytest.approx(80.0)
                assert status["state"] == "running"
            finally:
                await proto.close()
        finally:
            code, rest = await stop(proc, sig)
        assert code == 0, rest
        assert "stopped" in rest and "Traceback" not in rest

    run(main, timeout=60)


def test_sim_bess_over_rtu_on_a_pty() -> None:
    async def main() -> None:
        async with pty_link() as link:
            proc, line = await start("--rtu", link.device_end, "--parity", "N", "--soc", "42")
            try:
                assert f"Modbus RTU on {link.device_end}" in line
                proto = ProtocolFactory().create(
                    "modbus_rtu", {"port": link.host_end, "parity": "N", "timeout": 2.0}
                )
                try:
                    status = await proto.read_status()
                    assert status["soc"] == pytest.approx(42.0)
                    assert status["mode"] == "standby"
                finally:
                    await proto.close()
            finally:
                code, rest = await stop(proc, signal.SIGINT)
            assert code == 0, rest

    run(main, timeout=60)


def test_sim_bess_bad_options_exit_2() -> None:
    async def main() -> None:
        for args in (("--device-id", "0"), ("--rtu", "/dev/vpp-no-such-tty")):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vpp", "sim", "bess", *args,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 2, err
            assert b"vpp sim bess:" in err

    run(main, timeout=60)


def test_sim_bess_serves_sunspec_to_the_sunspec_driver() -> None:
    async def main() -> None:
        proc, line = await start("--sunspec", "--port", "0", "--soc", "37",
                                 "--rated-power-kw", "120")  # fmt: skip
        try:
            assert "SunSpec over Modbus TCP" in line
            port = int(line.split("127.0.0.1:")[1].split(",")[0])
            proto = ProtocolFactory().create("sunspec", {"host": "127.0.0.1", "port": port})
            try:
                # The driver finds the 'SunS' marker and the model chain, and reads the
                # battery's SOC (713) and the inverter's rating (702) as served.
                status = await proto.read_status()
                assert status["soc_pct"] == pytest.approx(37.0, abs=0.1)
                assert status["rated_power_kw"] == pytest.approx(120.0)
            finally:
                await proto.close()
        finally:
            code, rest = await stop(proc, signal.SIGTERM)
        assert code == 0, rest

    run(main, timeout=60)


def test_sim_bess_refuses_sunspec_over_rtu_in_one_line() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "vpp", "sim", "bess", "--sunspec", "--rtu", "/dev/null"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "vpp sim bess: --sunspec serves Modbus TCP only, not with --rtu"
    ]
