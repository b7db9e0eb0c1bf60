"""The simulated plant: BESS simulators and a grid model measured by a PMU, read over the
real protocols (C37.118 with PdcClient, Modbus TCP with the driver)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import pytest

from tests.support.aio import run
from vpp import c37118 as c
from vpp.config import load
from vpp.config.models import SiteConfig
from vpp.drivers.factory import ProtocolFactory
from vpp.drivers.pmu import PdcClient
from vpp.sim.plant import Plant, serve_plant, with_ports

RATE = 50


def site(events: list[dict[str, float]], repeat_s: float | None = None) -> SiteConfig:
    """The default site with a noiseless PMU and the given grid events, on a 20 MW
    island (where one battery's 400 kW moves the frequency visibly)."""
    data: dict[str, Any] = load().model_dump(mode="json")
    sim = data["simulation"]
    sim["grid"]["base_mw"] = 20.0
    sim["events"] = events
    sim["repeat_s"] = repeat_s
    sim["pmu"]["noise_hz"] = 0.0
    return SiteConfig.model_validate(data)


async def frames(port: int, n: int) -> list[c.DataFrame]:
    """The first ``n`` data frames from the PMU on ``port``."""
    client = PdcClient("127.0.0.1", port)
    out: list[c.DataFrame] = []
    try:
        async with contextlib.aclosing(client.frames()) as stream:
            async for fr in stream:
                if isinstance(fr, c.DataFrame):
                    out.append(fr)
                    if len(out) == n:
                        break
    finally:
        await client.close()
    return out


def model_time(fr: c.DataFrame, k0: int) -> float:
    """Seconds from the plant's start of frame ``fr`` (frame k carries k / rate)."""
    return (fr.soc * RATE + fr.fracsec // (1_000_000 // RATE) - k0) / RATE


def test_pmu_frames_show_the_event_dip() -> None:
    # 2 MW lost on the 20 MW, H = 4 s island: ROCOF -dP f0 / (2 H S) = -0.625 Hz/s.
    cfg = site([{"time_s": 0.5, "delta_mw": 2.0}])

    async def main() -> tuple[list[c.DataFrame], int]:
        async with Plant(cfg) as plant:
            got = await frames(plant.pmu.port, 100)
            return got, plant.pmu.k0

    data, k0 = run(main())
    times = [model_time(fr, k0) for fr in data]
    before = [fr.freq for fr, t in zip(data, times, strict=True) if t < 0.5]
    after = [fr for fr, t in zip(data, times, strict=True) if t >= 0.5]
    assert before and all(f == pytest.approx(50.0, abs=1e-6) for f in before)
    assert after[0].dfreq == pytest.approx(-0.625, rel=0.02)
    assert min(fr.freq for fr in after) < 49.5
    assert all(b.freq < a.freq for a, b in itertools.pairwise(after)), "falls"


def test_events_repeat_every_period() -> None:
    cfg = site([{"time_s": 0.1, "delta_mw": 1.0}, {"time_s": 0.3, "delta_mw": -1.0}], 0.4)

    async def main() -> tuple[list[c.DataFrame], float]:
        async with Plant(cfg) as plant:
            got = await frames(plant.pmu.port, 60)
            return got, plant.model.load_mw

    data, _ = run(main())
    # One period is 20 frames: each starts with a fall (deficit) and a recovery.
    steps = [fr.dfreq for fr in data]
    falls = [k for k in range(1, len(steps)) if steps[k] < -0.1 <= steps[k - 1]]
    assert len(falls) >= 2
    assert all((b - a) % 20 == 0 for a, b in itertools.pairwise(falls))


async def run_with_discharge(kw: float) -> list[float]:
    """Frequencies of 200 frames (4 s) after a 1 MW loss at 0.2 s, with bess-1 (500 kW)
    told over Modbus to discharge ``kw`` from the start."""
    cfg = site([{"time_s": 0.2, "delta_mw": 1.0}])
    stop = asyncio.Event()
    ready: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_plant(cfg, stop, ready.set_result))
    try:
        ports = await ready
        wired = with_ports(cfg, ports)
        inv = wired.units()[0].inverter
        proto = ProtocolFactory().create(inv.protocol, inv.config, label="bess-1")
        try:
            if kw:
                for command, params in (
                    ("enable", {}),
                    ("set_mode", {"mode": "power_control"}),
                    ("set_power", {"kw": kw}),
                ):
                    assert (await proto.send_command(command, params)).ok
            got = await frames(ports["pmu"], 200)
            status = await proto.read_status()
        finally:
            await proto.close()
        assert status["active_power"] == pytest.approx(kw, abs=1.0)
        return [fr.freq for fr in got]
    finally:
        stop.set()
        await task


def test_discharge_raises_the_measured_frequency() -> None:
    base = run(run_with_discharge(0.0))
    lifted = run(run_with_discharge(400.0))
    # The simulator ramps at 100 kW/s: after 4 s it delivers 400 kW, 2 % of the island,
    # against the 5 % loss. Its frames end clearly above the run without it.
    assert min(base) < 49.75
    assert lifted[-1] > base[-1] + 0.01
    assert min(lifted) > min(base)


def test_with_ports_points_the_site_at_the_plant() -> None:
    cfg = load()
    wired = with_ports(cfg, {"pmu": 4999, "bess-1": 5001, "bess-3": 5003})
    assert all(f.pmu.port == 4999 and f.pmu.host == "127.0.0.1" for f in wired.field)
    ports = {u.id: u.inverter.config["port"] for u in wired.units()}
    assert ports == {"bess-1": 5001, "bess-2": 0, "bess-3": 5003}
    assert wired.simulation.pmu.port == 4999
    assert {b.unit: b.port for b in wired.simulation.bess} == {
        "bess-1": 5001, "bess-2": 0, "bess-3": 5003
    }
    assert cfg.simulation.pmu.port == 0  # the original is untouched


def test_each_unit_has_a_can_bms_following_its_battery() -> None:
    cfg = site([])

    async def main() -> None:
        async with Plant(cfg) as plant:
            ports = plant.ports
            assert {f"{u}/bms" for u in ("bess-1", "bess-2", "bess-3")} <= set(ports)
            pointed = with_ports(cfg, ports)
            unit = next(u for u in pointed.units() if u.id == "bess-1")
            assert unit.bms is not None
            assert unit.bms.config["bus_options"]["port"] == ports["bess-1/bms"]
            # Read the simulated BMS with the real driver over the CAN bus the config names.
            plant.sims["bess-1"].model.soc_pct = 63.0
            plant.sims["bess-1"].model.temp_c = 31.0
            bms = ProtocolFactory().create("can_bms", unit.bms.config, label="bess-1/bms")
            try:
                await bms.connect()
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    status = await bms.read_status()
                    if status.get("soc_pct") == pytest.approx(63.0, abs=0.5) and status.get(
                        "temp_max_c"
                    ) == pytest.approx(31.0, abs=0.5):
                        break
                assert status["soc_pct"] == pytest.approx(63.0, abs=0.5)
                assert status["temp_max_c"] == pytest.approx(31.0, abs=0.5)
                assert status["bms_faults"] == 0
            finally:
                await bms.close()

    run(main())


def test_the_plant_drops_only_pymodbus_s_client_gone_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pymodbus logs its server answering a client that has just gone at ERROR; the plant
    # sees that race at every site stop, so that one line is dropped, nothing else.
    from pymodbus.logging import Log  # vpp.sim.plant (imported above) installed the filter

    with caplog.at_level(logging.DEBUG, logger="pymodbus.logging"):
        Log.error("Cancel send, because not connected!")
        Log.error("Some other failure")
    messages = [r.getMessage() for r in caplog.records if r.name == "pymodbus.logging"]
    assert messages == ["Some other failure"]
