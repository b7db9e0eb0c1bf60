"""A BMS simulator on CAN: a 16-cell pack with 8 temperature sensors.

It sends the messages of the DBC file (``vpp/drivers/dbc/bms.dbc`` by default, encoded
with cantools) periodically on a python-can bus, from a plain state that tests set
directly or that :meth:`BmsSimulator.follow` copies from a :class:`SimBattery`. The
alarm bits are derived from the state, so an injected fault shows up the way a real
BMS would report it. Faults: over-temperature, cell imbalance, a dead cell (0 V or
stuck), and silence of one or all messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import can

from vpp.aio import Startable, cancel_and_wait
from vpp.drivers.can_bms import ALARMS, CELLS, SENSORS, default_dbc_path, load_dbc
from vpp.drivers.can_bus import open_bus
from vpp.sim.battery import SimBattery

__all__ = ["BmsLimits", "BmsSimulator"]

log = logging.getLogger(__name__)


class BmsLimits:
    """Thresholds of the simulated BMS's own alarms (LFP values)."""

    cell_max_mv = 3650
    cell_min_mv = 2500
    dead_cell_mv = 1000
    temp_max_c = 55.0
    temp_min_c = 0.0
    current_max_a = 200.0
    imbalance_mv = 100


class BmsSimulator(Startable):
    """Sends the BMS's CAN frames on ``interface``/``channel`` while started.

    ``period_s`` overrides every message's DBC period (tests use a short one). The
    state attributes (``cells_mv``, ``temps_c``, ``current_a`` positive = discharge,
    ``soc_pct``, ``soh_pct``, ``cycle_count``, ``state``, ``balancing``) are read at
    every send, so a change shows up in the next frame.
    """

    def __init__(
        self,
        *,
        interface: str = "virtual",
        channel: str = "vpp-bms",
        dbc: Path | None = None,
        period_s: float | None = None,
        bus_options: dict[str, Any] | None = None,
        battery: SimBattery | None = None,
    ) -> None:
        """A stopped simulator of a healthy pack at rest (3300 mV cells, 25 degrees C).

        The bus is opened like the driver's (:func:`vpp.drivers.can_bus.open_bus`), with
        ``bus_options`` (e.g. ``port`` of the ``udp_loopback`` interface, which crosses
        processes of this host and nothing else); with ``battery`` the state follows that
        battery before every send (:meth:`follow`)."""
        self.interface = interface
        self.channel = channel
        self.bus_options = dict(bus_options or {})
        self.battery = battery
        self.db = load_dbc(dbc or default_dbc_path())
        self.periods = {
            m.name: period_s if period_s is not None else (m.cycle_time or 1000) / 1000.0
            for m in self.db.messages
        }
        self.cells_mv: list[int] = [3300] * CELLS
        self.temps_c: list[float] = [25.0] * SENSORS
        self.current_a = 0.0
        self.soc_pct = 50.0
        self.soh_pct = 100.0
        self.cycle_count = 0
        self.state = 0
        self.balancing: list[bool] = [False] * CELLS
        self.comm_fault = False
        self.limits = BmsLimits()
        self.silenced: set[str] = set()
        self.stuck: dict[int, int] = {}
        self.sent = 0
        self._bus: can.BusABC | None = None
        self._task: asyncio.Task[None] | None = None

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the bus and start sending."""
        if self._task is not None:
            return
        self._bus = open_bus(self.interface, self.channel, self.bus_options)
        self._task = asyncio.create_task(self._send_loop(self._bus), name="bms-sim")

    @property
    def running(self) -> bool:
        """Whether it is sending."""
        return self._task is not None

    async def stop(self) -> None:
        """Stop sending and close the bus."""
        task, self._task = self._task, None
        for failed in await cancel_and_wait([task]):
            log.error("BMS simulator: the send loop failed", exc_info=failed.exception())
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()

    # --- state and faults ------------------------------------------------------------------

    def follow(self, battery: SimBattery) -> None:
        """Copy the state of ``battery`` (a :class:`SimBattery`) into the frames."""
        mv = round(battery.cell_voltage() * 1000)
        self.cells_mv = [mv] * CELLS
        self.temps_c = [battery.temp_c - 1.0] * (SENSORS - 1) + [battery.temp_c]
        # A battery that knows its own pack (a BESS model of many modules) gives its DC
        # current; otherwise the pack is this BMS's 16 cells.
        pack_v = float(getattr(battery, "dc_voltage_v", lambda: battery.cell_voltage() * CELLS)())
        self.current_a = 1000.0 * battery.power_kw / pack_v if pack_v else 0.0
        self.soc_pct = battery.soc_pct
        self.state = 0 if battery.power_kw == 0 else (2 if battery.power_kw > 0 else 1)

    def inject_over_temperature(self, sensor: int = 0, temp_c: float = 70.0) -> None:
        """Sensor ``sensor`` (0-based) reads ``temp_c``."""
        self.temps_c[sensor] = temp_c

    def inject_imbalance(self, cell: int = 0, delta_mv: int = 250) -> None:
        """Cell ``cell`` (0-based) drifts ``delta_mv`` away from the others."""
        self.cells_mv[cell] += delta_mv

    def inject_dead_cell(self, cell: int = 0, *, stuck: bool = False) -> None:
        """Cell ``cell`` reads 0 V, or with ``stuck`` keeps its present reading whatever
        the state does (the BMS reports it dead either way)."""
        if stuck:
            self.stuck[cell] = self.cells_mv[cell]
        else:
            self.cells_mv[cell] = 0

    def silence(self, *messages: str) -> None:
        """Stop sending ``messages`` (every message if none is named)."""
        names = set(messages) or set(self.periods)
        unknown = names - set(self.periods)
        if unknown:
            raise KeyError(f"unknown messages {sorted(unknown)}")
        self.silenced |= names

    def resume(self, *messages: str) -> None:
        """Send ``messages`` again (every message if none is named)."""
        self.silenced -= set(messages) or set(self.silenced)

    def clear_faults(self) -> None:
        """Back to a healthy pack (silence is lifted too)."""
        self.cells_mv = [3300] * CELLS
        self.temps_c = [25.0] * SENSORS
        self.stuck.clear()
        self.silenced.clear()
        self.comm_fault = False

    # --- frames ----------------------------------------------------------------------------

    def cells_reported_mv(self) -> list[int]:
        """The cell voltages as sent (stuck cells keep their frozen value)."""
        return [self.stuck.get(i, mv) for i, mv in enumerate(self.cells_mv)]

    def alarms(self) -> dict[str, bool]:
        """The alarm bits derived from the state."""
        lim = self.limits
        cells = self.cells_reported_mv()
        alive = [mv for mv in cells if mv >= lim.dead_cell_mv]
        return {
            "OverVoltage": max(cells) > lim.cell_max_mv,
            "UnderVoltage": bool(alive) and min(alive) < lim.cell_min_mv,
            "OverTemperature": max(self.temps_c) > lim.temp_max_c,
            "UnderTemperature": min(self.temps_c) < lim.temp_min_c,
            "OverCurrent": abs(self.current_a) > lim.current_max_a,
            "Imbalance": bool(alive) and max(alive) - min(alive) > lim.imbalance_mv,
            "DeadCell": len(alive) < len(cells) or bool(self.stuck),
            "CommFault": self.comm_fault,
        }

    def signals(self, message: str) -> dict[str, float]:
        """The physical values of ``message`` from the present state."""
        if message.startswith("BMS_CellVoltages"):
            base = 4 * (int(message[-1]) - 1)
            cells = self.cells_reported_mv()
            return {f"Cell{base + j + 1:02d}_mV": cells[base + j] for j in range(4)}
        if message == "BMS_Temperatures":
            return {f"Temp{j + 1}_C": self.temps_c[j] for j in range(SENSORS)}
        if message == "BMS_PackStatus":
            return {
                "PackVoltage_V": sum(self.cells_reported_mv()) / 1000.0,
                "Current_A": self.current_a,
                "SOC_pct": self.soc_pct,
                "State": self.state,
            }
        if message == "BMS_Health":
            return {"SOH_pct": self.soh_pct, "CycleCount": self.cycle_count}
        if message == "BMS_Alarms":
            alarms = self.alarms()
            return {name: int(alarms[name]) for name in ALARMS}
        if message == "BMS_Balancing":
            return {f"Balance{j + 1:02d}": int(self.balancing[j]) for j in range(CELLS)}
        raise KeyError(message)

    def frame(self, message: str) -> can.Message:
        """The CAN frame of ``message`` now."""
        msg = self.db.get_message_by_name(message)
        data = msg.encode(self.signals(message), scaling=True)
        return can.Message(arbitration_id=msg.frame_id, data=data, is_extended_id=False)

    async def _send_loop(self, bus: can.BusABC) -> None:
        due = dict.fromkeys(self.periods, time.monotonic())
        tick = min(self.periods.values())
        while True:
            now = time.monotonic()
            if self.battery is not None:
                self.follow(self.battery)
            for name, when in due.items():
                if now < when:
                    continue
                # Keep the cadence of each message, but skip missed slots after a stall.
                due[name] = max(when + self.periods[name], now)
                if name in self.silenced:
                    continue
                try:
                    bus.send(self.frame(name))
                    self.sent += 1
                except Exception:
                    # One bad frame (e.g. a value out of the DBC range) must not stop
                    # the others: a real BMS keeps sending what it can.
                    log.warning("BMS simulator: cannot send %s", name, exc_info=True)
            await asyncio.sleep(max(0.0, min(min(due.values()) - time.monotonic(), tick)))
