"""The physical model behind the BESS simulator: SimBattery plus an inverter.

Adds to :class:`vpp.sim.battery.SimBattery` what a grid-scale unit shows at its
terminals: separate charge and discharge efficiencies, power limits that fall to zero
at the SOC and temperature limits, a ramp limit on active power, reactive power within
the apparent-power rating (active power has priority), state of health, alarms and
faults. Alarms follow their cause; faults latch, as on a real inverter, and stay until
:meth:`BessModel.reset_alarms` once their cause has gone. Positive power = discharge,
as everywhere in vpp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vpp.sim.battery import SimBattery
from vpp.validation import config_error

__all__ = ["ALARM_BITS", "FAULT_BITS", "BessCommand", "BessModel", "State"]

#: Bit numbers of the alarm and fault words (the register map documents the same).
ALARM_BITS = {"soc_low": 0, "soc_high": 1, "temperature_high": 2, "setpoint_limited": 3}
FAULT_BITS = {"over_temperature": 0, "under_temperature": 1}


class State:
    """Operating state codes of the ``state`` register."""

    STANDBY = 0
    RUNNING = 1
    FAULT = 2


@dataclass
class BessCommand:
    """What the controller has asked for, as written to the command registers."""

    enable: bool = False
    mode: int = 0  # 0 standby, 1 power control
    p_kw: float = 0.0
    q_kvar: float = 0.0


@dataclass
class BessModel(SimBattery):
    """A battery with an inverter of ``p_max_kw`` / ``s_max_kva``; positive = discharge.

    SimBattery's single ``efficiency`` is not used: the two directions have their own.
    """

    cells: int = 240  # ~790 V DC bus: a grid-scale string, not the demo's 16S pack
    s_max_kva: float = 0.0  # 0: the same as p_max_kw
    ramp_kw_s: float = 100.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soh_pct: float = 100.0
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    # Temperature windows (STANDARDS.md: charge 0-45 C, discharge -20-60 C).
    charge_temp_c: tuple[float, float] = (0.0, 45.0)
    discharge_temp_c: tuple[float, float] = (-20.0, 60.0)
    soc_alarm_low_pct: float = 10.0
    soc_alarm_high_pct: float = 95.0
    q_kvar: float = 0.0
    alarms: int = field(default=0, init=False)
    faults: int = field(default=0, init=False)
    state: int = field(default=State.STANDBY, init=False)

    def __post_init__(self) -> None:
        if self.s_max_kva == 0.0:
            self.s_max_kva = self.p_max_kw
        checks = [
            ("capacity_kwh", self.capacity_kwh > 0),
            ("p_max_kw", self.p_max_kw > 0),
            ("s_max_kva", self.s_max_kva >= self.p_max_kw),
            ("ramp_kw_s", self.ramp_kw_s > 0),
            ("charge_efficiency", 0 < self.charge_efficiency <= 1),
            ("discharge_efficiency", 0 < self.discharge_efficiency <= 1),
            ("soh_pct", 0 < self.soh_pct <= 100),
            ("soc_pct", 0 <= self.soc_pct <= 100),
            ("soc_min_pct", 0 <= self.soc_min_pct < self.soc_max_pct <= 100),
        ]
        for name, ok in checks:
            if not ok:
                raise config_error(f"BESS model: invalid {name}", name)

    @property
    def energy_kwh(self) -> float:
        """Usable energy at full charge: capacity derated by state of health."""
        return self.capacity_kwh * self.soh_pct / 100.0

    def max_discharge_kw(self) -> float:
        """Discharge power available now."""
        lo, hi = self.discharge_temp_c
        if self.soc_pct <= self.soc_min_pct or not lo <= self.temp_c <= hi:
            return 0.0
        return self.p_max_kw

    def max_charge_kw(self) -> float:
        """Charge power available now (a positive number)."""
        lo, hi = self.charge_temp_c
        if self.soc_pct >= self.soc_max_pct or not lo <= self.temp_c <= hi:
            return 0.0
        return self.p_max_kw

    def step(self, cmd: BessCommand, dt: float) -> None:
        """Advance the model by ``dt`` seconds under ``cmd``."""
        if dt <= 0:
            return
        # Latched: a fault that has cleared itself keeps the unit off until reset.
        self.faults |= self._faults()
        running = cmd.enable and cmd.mode == 1 and not self.faults
        asked = cmd.p_kw if running else 0.0
        target = max(-self.max_charge_kw(), min(self.max_discharge_kw(), asked))
        # Ramp limit: a real inverter slews; the controller sees the lag it must handle.
        step = self.ramp_kw_s * dt
        self.power_kw += max(-step, min(step, target - self.power_kw))
        # Active power has priority; reactive gets what the apparent rating leaves.
        q_room = math.sqrt(max(0.0, self.s_max_kva**2 - self.power_kw**2))
        q_asked = cmd.q_kvar if running else 0.0
        self.q_kvar = max(-q_room, min(q_room, q_asked))
        limited = running and (target != asked or q_asked != self.q_kvar)

        # Discharge draws more than it delivers; charge stores less than it takes.
        e_kwh = self.power_kw * dt / 3600.0
        stored = e_kwh / self.discharge_efficiency if e_kwh > 0 else e_kwh * self.charge_efficiency
        soc = self.soc_pct - 100.0 * stored / self.energy_kwh
        self.soc_pct = max(0.0, min(100.0, soc))
        # SimBattery's first-order thermal model: heating with |P|, cooling to ambient.
        heating = 0.002 * abs(self.power_kw) / self.p_max_kw
        self.temp_c += dt * (heating - (self.temp_c - self.ambient_c) / 600.0)

        self.state = State.FAULT if self.faults else State.RUNNING if running else State.STANDBY
        self.alarms = (
            (self.soc_pct <= self.soc_alarm_low_pct) << ALARM_BITS["soc_low"]
            | (self.soc_pct >= self.soc_alarm_high_pct) << ALARM_BITS["soc_high"]
            | (self.temp_c >= self.charge_temp_c[1]) << ALARM_BITS["temperature_high"]
            | limited << ALARM_BITS["setpoint_limited"]
        )

    def reset_alarms(self) -> int:
        """Clear the latched faults whose cause has gone; return the faults still active.

        The state leaves FAULT at the next step if none is left.
        """
        self.faults = self._faults()
        return self.faults

    def _faults(self) -> int:
        return (self.temp_c > self.discharge_temp_c[1]) << FAULT_BITS["over_temperature"] | (
            self.temp_c < self.discharge_temp_c[0]
        ) << FAULT_BITS["under_temperature"]

    def measurements(self) -> dict[str, float | bool]:
        """What an inverter reports of this model, by the point names of the default
        register map (the Modbus and MQTT simulators publish these)."""
        return {
            "active_power": self.power_kw,
            "reactive_power": self.q_kvar,
            "soc": self.soc_pct,
            "soh": self.soh_pct,
            "dc_voltage": self.dc_voltage_v(),
            "dc_current": self.dc_current_a(),
            "max_charge_power": self.max_charge_kw(),
            "max_discharge_power": self.max_discharge_kw(),
            "temperature_min": self.temp_c - 1.0,
            "temperature_max": self.temp_c,
            "alarm_bits": self.alarms,
            "fault_bits": self.faults,
            "state": self.state,
            "running": self.state == 1,
        }

    def dc_voltage_v(self) -> float:
        """Pack voltage: SimBattery's LFP cell curve times the cells in series."""
        return self.cell_voltage() * self.cells

    def dc_current_a(self) -> float:
        """Pack current, positive = discharge (inverter losses ignored)."""
        return 1000.0 * self.power_kw / self.dc_voltage_v()
