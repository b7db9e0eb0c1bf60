"""A SunSpec inverter written by the core's real-time loop, end to end.

A field controller whose unit is a SunSpec BESS (``protocol: sunspec``) against the
SunSpec BESS simulator and a PMU server: once the driver has walked the model chain the
controller gives the loop the device's 704 layout, and the setpoints reach the device
from the loop (the driver writes none of them any more). When the device is replaced by
one with another model chain at the same address (704 elsewhere), nothing is ever
written at the old layout's registers: the loop's check on connect refuses the device
(an alarm says so) until the driver has discovered it again, and the loop then writes
the new layout. 704's reversion is the loop's watchdog: the setting holds while the
loop runs, reverts to 0 W while it stalls, and the loop brings it back.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from tests.support.devices import run, wait_until
from vpp.config.models import DeviceConfig, FieldConfig, PmuSource, RealtimeConfig, UnitConfig
from vpp.orchestrator.field.controller import FieldController
from vpp.sim.frequency import FrequencyProfile
from vpp.sim.pmu import PmuServer
from vpp.sim.sunspec import ALL_MODELS, SunSpecBessSimulator

RATED = 500.0
STEP = FrequencyProfile(kind="step", magnitude=-0.2, start=0.0, noise=0.0)
DROOP_KW = RATED * 0.1 / (0.05 * 50.0)  # 49.80 Hz: 0.1 Hz beyond the deadband at 5 %


class RecordingSunSpec(SunSpecBessSimulator):
    """Records every write request: its address and registers."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.writes: list[tuple[int, list[int]]] = []

    def _write(self, offset: int, values: list[int]) -> Any:
        self.writes.append((self.base_address + offset, list(values)))
        return super()._write(offset, values)

    def setpoints_kw(self) -> list[float]:
        """The setpoints of the writes of WSetEna, WSetMod and WSet (the loop's and the
        driver's ``set_power``), at this device's own WSet_SF."""
        sf = self._raw(704, "WSet_SF")
        sf = sf - 0x10000 if sf >= 0x8000 else sf
        return [
            struct.unpack(">i", struct.pack(">HH", *words[2:4]))[0] * 10.0**sf / 1000.0
            for address, words in self.writes
            if address == self.wset_ena() and len(words) == 4
        ]

    def wset_ena(self) -> int:
        """The address of 704 ``WSetEna`` (the loop's write starts there)."""
        return self.address_of(704) + int(self.blocks[704].points["WSetEna"].offset)


def _field(
    pmu_port: int, port: int, rt: RealtimeConfig | None = None, **driver: Any
) -> FieldConfig:
    where = {"host": "127.0.0.1", "port": port, "timeout": 0.5, "retries": 0, **driver}
    inv = DeviceConfig(protocol="sunspec", config=where, poll_interval_s=0.1)
    unit = UnitConfig(id="bess-1", rated_power_kw=RATED, capacity_kwh=1000, inverter=inv)
    return FieldConfig(id="field-a", pmu=PmuSource(port=pmu_port), units=[unit],
                       realtime=rt or RealtimeConfig())  # fmt: skip


def _loop_unit(ctl: FieldController) -> dict[str, Any]:
    st = ctl.realtime_status()
    assert st is not None
    u: dict[str, Any] = st["units"][0]
    return u


def test_the_loop_writes_a_sunspec_inverter_once_discovered() -> None:
    async def main() -> None:
        sim = RecordingSunSpec(port=0, rated_power_kw=RATED, ramp_kw_s=5000.0)
        pmu = PmuServer(port=0, rate=50, profile=STEP)
        async with sim, pmu:
            ctl = FieldController(_field(pmu.port, sim.port), realtime=True)
            async with ctl:
                await wait_until(lambda: _loop_unit(ctl)["verified"], timeout=10)
                assert _loop_unit(ctl)["loop_writes"]
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
                by_driver = ctl.writers["bess-1"].written
                loop_writes = _loop_unit(ctl)["writes"]
                await ctl.command("set_base", {"unit": "bess-1", "kw": 100.0})
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW - 100) < 1, timeout=5)
                # The loop wrote it, in one request with the enables; the driver did not.
                assert _loop_unit(ctl)["writes"] > loop_writes
                assert ctl.writers["bess-1"].written == by_driver
                assert any(a == sim.wset_ena() and len(w) == 4 for a, w in sim.writes)
                assert sim._raw(704, "WSetEna") == 1 and sim._raw(704, "WSetMod") == 1

    run(main, timeout=40)


def test_a_replaced_device_is_never_written_at_the_old_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[tuple[str, str]] = []

    async def main() -> None:
        first = RecordingSunSpec(port=0, rated_power_kw=RATED, ramp_kw_s=5000.0)
        async with PmuServer(port=0, rate=50, profile=STEP) as pmu:
            async with first:
                port = first.port
                cfg = _field(pmu.port, port, required_models=[1, 701, 704, 713, 802])
                ctl = FieldController(cfg, realtime=True)
                publish = ctl.event

                def event(kind: str, text: str, **kw: Any) -> None:
                    events.append((kind, text))
                    publish(kind, text, **kw)

                monkeypatch.setattr(ctl, "event", event)
                await ctl.start()
                try:
                    await wait_until(lambda: abs(first.model.power_kw - DROOP_KW) < 1,
                                     timeout=10)  # fmt: skip
                    assert _loop_unit(ctl)["verified"]
                    old = first.wset_ena()
                    # The driver comes back only when the test says (a device that
                    # answers it late): the loop meets the new device first.
                    driver = ctl._rt_sunspec[0]
                    gate = asyncio.Event()
                    discover = driver._discover

                    async def late_discover() -> None:
                        await gate.wait()
                        await discover()

                    monkeypatch.setattr(driver, "_discover", late_discover)
                except BaseException:
                    await ctl.stop()
                    raise
            # Another device at the same address, without model 702: its 704 starts
            # elsewhere, so the old layout's registers hold other points.
            models = tuple(m for m in ALL_MODELS if m != 702)
            second = RecordingSunSpec(port=port, rated_power_kw=RATED, ramp_kw_s=5000.0,
                                      models=models)  # fmt: skip
            assert second.wset_ena() != old
            try:
                async with second:
                    # The loop meets the device first: refused, reported, never written.
                    await wait_until(lambda: _loop_unit(ctl)["layout_mismatches"] >= 2,
                                     timeout=10)  # fmt: skip
                    assert second.writes == [] and not _loop_unit(ctl)["verified"]
                    alarms = [text for kind, text in events if kind == "realtime"]
                    assert len(alarms) == 1 and "SunSpec registers differ" in alarms[0], events
                    # The driver discovers the new layout; the loop writes it.
                    gate.set()
                    await wait_until(lambda: abs(second.model.power_kw - DROOP_KW) < 1,
                                     timeout=15)  # fmt: skip
                    u = _loop_unit(ctl)
                    assert u["verified"] and u["loop_writes"], u
                    await asyncio.sleep(0.3)
            finally:
                await ctl.stop()
            # Never at the old layout's registers; at the new one's, with its setpoints.
            assert all(a != old for a, _w in second.writes), second.writes
            asked = second.setpoints_kw()
            assert asked and abs(asked[-1] - DROOP_KW) < 1, asked

    run(main, timeout=60)


def test_a_stalled_loop_lets_the_sunspec_setting_revert_then_resumes() -> None:
    async def main() -> None:
        sim = RecordingSunSpec(port=0, rated_power_kw=RATED, ramp_kw_s=5000.0)
        pmu = PmuServer(port=0, rate=50, profile=STEP)
        rt = RealtimeConfig(watchdog_timeout_s=1.0, stall_after_s=0.3)
        async with sim, pmu:
            ctl = FieldController(_field(pmu.port, sim.port, rt), realtime=True)
            async with ctl:
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=10)
                # Written on connect: revert to 0 W, enabled, after 1 s without a write.
                assert sim._raw(704, "WSetRvrtTms") == 1 and sim._raw(704, "WSetEnaRvrt") == 1
                assert sim._raw(704, "WSetRvrt") == 0
                # The frequency holds at 49.80 Hz, so the setpoint does not change: the
                # loop writes it again every 0.2 s and the setting never reverts.
                await asyncio.sleep(2.5)
                assert sim.reversions == 0 and abs(sim.model.power_kw - DROOP_KW) < 1
                assert ctl.rt is not None
                ctl.rt.inject("stall", 2.5)
                await wait_until(lambda: sim.reversions > 0, timeout=2.5)
                await wait_until(lambda: abs(sim.model.power_kw) < 1, timeout=1)
                assert ctl._rt_stalled  # reported while it lasts
                # Running again: the next setpoint is written whatever it is.
                await wait_until(lambda: abs(sim.model.power_kw - DROOP_KW) < 1, timeout=5)
                assert sim.reversions == 1

    run(main, timeout=40)
