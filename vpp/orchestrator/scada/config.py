"""The ``scada`` section of the site configuration (pydantic only: importable without
the outstations)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vpp.orchestrator.scada.dnp3_map import Dnp3Config
from vpp.orchestrator.scada.iec104_map import Iec104Config
from vpp.orchestrator.scada.points import COMMAND_POINTS

__all__ = ["ScadaSection"]


class ScadaSection(BaseModel):
    """SCADA outstations for the grid operator (docs/scada.md): IEC 60870-5-104 and DNP3
    serving the plant's points, and the commands their masters may give."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False, description="run the scada process (its outstations as enabled below)"
    )
    update_s: float = Field(
        default=0.5, gt=0, le=60,
        description="how often the points are refreshed from the bus (and sent when changed), s",
    )  # fmt: skip
    status_s: float = Field(
        default=10.0, gt=0, description="how often the outstations' counters are published, s"
    )
    commands: tuple[str, ...] = Field(
        default=("agc.setpoint_mw",),
        description="command points a master may use (agc.setpoint_mw, plant.target_mw, "
        "plant.enable); others are refused whatever the point map holds",
    )
    iec104: Iec104Config = Field(
        default_factory=Iec104Config,
        description="IEC 60870-5-104 outstation (docs/scada-iec104.md)",
    )
    dnp3: Dnp3Config = Field(
        default_factory=Dnp3Config, description="DNP3 outstation (docs/scada-dnp3.md)"
    )

    @field_validator("commands")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - COMMAND_POINTS.keys())
        if unknown:
            raise ValueError(f"unknown command points {unknown}; known: {sorted(COMMAND_POINTS)}")
        return v
