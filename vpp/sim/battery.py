"""A small battery model for the demo: SOC integration with efficiency, temperature
rising with power, and the telemetry a BMS would report.

Deliberately simple (the Modbus/SunSpec BESS simulator of the drivers layer replaces it):
enough for the safety envelope and the droop derating to see realistic values.
"""

from __future__ import annotations

from dataclasses import dataclass

from vpp.core import Telemetry


@dataclass
class SimBattery:
    """A 16S LFP pack behind an inverter of ``p_max_kw``; positive power = discharge."""

    capacity_kwh: float = 10.0
    p_max_kw: float = 5.0
    soc_pct: float = 60.0
    temp_c: float = 25.0
    ambient_c: float = 25.0
    efficiency: float = 0.95
    cells: int = 16
    power_kw: float = 0.0

    def apply(self, setpoint_kw: float, dt: float) -> None:
        """Run the pack at ``setpoint_kw`` for ``dt`` seconds."""
        p = max(-self.p_max_kw, min(self.p_max_kw, setpoint_kw))
        self.power_kw = p
        # Discharge draws more than it delivers; charge stores less than it takes.
        energy_kwh = p * dt / 3600.0
        stored = energy_kwh / self.efficiency if p > 0 else energy_kwh * self.efficiency
        self.soc_pct = max(0.0, min(100.0, self.soc_pct - 100.0 * stored / self.capacity_kwh))
        # First-order thermal model: heating with |P|, cooling towards ambient (tau 600 s).
        heating = 0.002 * abs(p) / self.p_max_kw
        self.temp_c += dt * (heating - (self.temp_c - self.ambient_c) / 600.0)

    def cell_voltage(self) -> float:
        """LFP open-circuit voltage: flat around 3.3 V, rising near full, falling near empty."""
        s = self.soc_pct / 100.0
        ocv = 3.20 + 0.15 * s + 0.15 * max(0.0, s - 0.9) * 10 - 0.3 * max(0.0, 0.1 - s) * 10
        # IR drop: discharge lowers, charge raises the terminal voltage.
        return ocv - 0.01 * self.power_kw / self.p_max_kw

    def telemetry(self, t: float) -> Telemetry:
        """What the BMS reports at time ``t``."""
        v = self.cell_voltage()
        pack = v * self.cells
        return Telemetry(
            timestamp=t,
            pack_voltage_v=pack,
            current_a=1000.0 * self.power_kw / pack,
            temp_min_c=self.temp_c - 1.0,
            temp_max_c=self.temp_c,
            soc_pct=self.soc_pct,
            cell_v_min=v - 0.003,
            cell_v_max=v + 0.003,
            power_kw=self.power_kw,
        )
