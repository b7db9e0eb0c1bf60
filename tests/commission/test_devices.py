"""Commissioning against the site's own devices (vpp.commission.devices): a BESS simulator
on Modbus TCP and a BMS simulator on the UDP loopback CAN bus read through the project's
drivers, read only; a closed port fails "reachable" quickly with its reason."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from tests.support.aio import free_port, run
from tests.support.net import free_udp_port
from vpp.commission.devices import (
    bms_problem,
    check_devices,
    device_figures,
    inverter_problem,
    run_device_checks,
)
from vpp.commission.suite import Commissioning, Figure
from vpp.config import load
from vpp.config.field import UnitConfig
from vpp.config.models import SiteConfig
from vpp.drivers.errors import ValidationError
from vpp.orchestrator.field.unit import INVERTER_NEEDS, map_telemetry
from vpp.sim.bess import BessSimulator
from vpp.sim.bess_model import BessCommand
from vpp.sim.bms import BmsSimulator

GROUP = "239.74.163.9"


def site_with(units: list[dict[str, Any]], **commissioning: Any) -> SiteConfig:
    """The default site with one field controller of ``units`` and its simulation off:
    its devices are taken as real."""
    data = load().model_dump(mode="json")
    data["simulation"] = {"enabled": False}
    data["field"] = [{"id": "field-x", "units": units}]
    data["commissioning"] = {**data["commissioning"], **commissioning}
    return SiteConfig.model_validate(data)


def unit(inverter: dict[str, Any], bms: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"id": "bess-1", "rated_power_kw": 500, "capacity_kwh": 1000, "inverter": inverter}
    if bms is not None:
        out["bms"] = bms
    return out


def by_name(figures: list[Figure]) -> dict[str, Figure]:
    return {f.name: f for f in figures}


def test_the_sites_devices_are_read_and_never_written() -> None:
    udp = free_udp_port()
    bus = {"interface": "udp_loopback", "channel": GROUP, "bus_options": {"port": udp}}
    requests: list[tuple[int, bool]] = []

    async def main() -> tuple[list[Figure], list[Any], BessSimulator]:
        sim = BessSimulator(port=0, initial_soc_pct=61.0)
        served = sim._action

        async def spy(func_code: int, start: int, address: int, count: int,
                      registers: list[int], values: Any) -> Any:  # fmt: skip
            # Every request the simulator's Modbus server serves, and whether it wrote.
            requests.append((func_code, values is not None))
            return await served(func_code, start, address, count, registers, values)

        sim._action = spy  # type: ignore[method-assign]
        bms = BmsSimulator(**bus, period_s=0.05)
        async with sim, bms:
            site = site_with([unit(
                {"protocol": "modbus_tcp", "poll_interval_s": 0.05,
                 "config": {"host": "127.0.0.1", "port": sim.port}},
                {"protocol": "can_bms", "poll_interval_s": 0.05, "config": bus},
            )])  # fmt: skip
            checks = await check_devices(site, reads=8)
            return device_figures(checks, site.commissioning), checks, sim

    start = time.monotonic()
    figures, checks, sim = run(main(), timeout=20)
    took = time.monotonic() - start
    got = by_name(figures)
    inv, bms = "field-x/bess-1 inverter", "field-x/bess-1 bms"
    for name in (inv, bms):
        assert got[f"{name}: reachable, reads answered"].ok, got
        assert got[f"{name}: reachable, reads answered"].value >= 8
        assert got[f"{name}: status usable"].ok, got[f"{name}: status usable"].reference
        poll = got[f"{name}: poll time, p99"]
        assert poll.ok and 0 < poll.value < 100, poll
    assert checks[0].where == f"127.0.0.1:{sim.port}"
    # Read only: the server answered reads and no write, and the simulator's commands
    # (enable, mode, setpoints) are still what it started with.
    assert len(requests) >= 8
    assert [r for r in requests if r[1]] == []
    assert sim.command == BessCommand()
    assert math.isclose(sim.model.soc_pct, 61.0, abs_tol=0.01)  # nothing moved it
    assert took < 10
    # The figures reach the verdict like every other.
    assert Commissioning(figures=figures).passed


def test_a_device_that_does_not_answer_fails_reachable_quickly() -> None:
    port = free_port()  # nothing listens there
    site = site_with([unit({"protocol": "modbus_tcp",
                            "config": {"host": "127.0.0.1", "port": port}})])  # fmt: skip
    start = time.monotonic()
    checks = run(check_devices(site, reads=20), timeout=15)
    took = time.monotonic() - start
    (check,) = checks
    figures = by_name(device_figures(checks, site.commissioning))
    reach = figures["field-x/bess-1 inverter: reachable, reads answered"]
    assert reach.ok is False and reach.value == 0 and reach.limit == 20
    assert reach.reference and "\n" not in reach.reference
    assert str(port) in reach.reference, reach.reference
    # No status, so no usable or poll figure: one failure, with its reason.
    assert list(figures) == [reach.name]
    result = Commissioning(figures=list(figures.values()))
    assert result.failures == [f"{reach.name}: 0 reads, required >= 20 reads"]
    # Bounded by the driver's own timeout and retries (1 s, 2 retries), not 20 reads.
    assert took < 5, took
    assert not check.reachable


def test_a_device_not_required_is_reported_only() -> None:
    site = site_with([unit({"protocol": "modbus_tcp",
                            "config": {"host": "127.0.0.1", "port": free_port(),
                                       "timeout": 0.2, "retries": 0}})],
                     devices_required=False)  # fmt: skip
    notes: list[str] = []
    # Through the suite's entry point (its own event loop), as run_commission calls it.
    figures = run_device_checks(site, quick=True, notes=notes)
    assert [(f.ok, f.value, f.limit) for f in figures] == [(None, 0, None)]
    assert notes == []


def test_a_simulated_site_skips_the_device_checks_with_a_note() -> None:
    notes: list[str] = []
    assert run_device_checks(load(), quick=True, notes=notes) == []
    assert len(notes) == 1 and "simulation is on" in notes[0]


@pytest.mark.parametrize("point", INVERTER_NEEDS)
def test_the_inverter_points_checked_are_the_ones_the_unit_needs(point: str) -> None:
    status: dict[str, float | bool | str] = {k: 1.0 for k in INVERTER_NEEDS}
    cfg = UnitConfig.model_validate(unit({"protocol": "modbus_tcp", "config": {"host": "x"}}))
    map_telemetry(cfg, status, None, 0.0)
    assert inverter_problem(status) == ""
    del status[point]
    with pytest.raises(ValidationError, match=point):
        map_telemetry(cfg, status, None, 0.0)
    assert inverter_problem(status) == f"missing {point}"
    status[point] = math.nan
    assert point in inverter_problem(status) and "finite" in inverter_problem(status)


def test_a_bms_status_without_every_message_or_stale_is_not_usable() -> None:
    good: dict[str, float | bool | str] = {"cell_v_min": 3.3, "cell_v_max": 3.31,
                                           "data_time": 1.0, "stale": False}  # fmt: skip
    assert bms_problem(good) == ""
    assert "data_time 0" in bms_problem({**good, "data_time": 0.0})
    assert "BMS_Alarms" in bms_problem({**good, "stale": True, "stale_BMS_Alarms": True})
    assert bms_problem({"cell_v_min": 3.3}) == "missing cell_v_max"
