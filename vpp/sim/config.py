"""Configuration of the simulators: the grid model's parameters, the frequency profiles.

A leaf (pydantic only): the site configuration, which every process loads, and the
command line take these from here without importing numpy and the simulators themselves
(:mod:`vpp.sim.grid_model` re-exports :class:`GridModelConfig`, :mod:`vpp.sim.frequency`
:data:`PROFILES`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PROFILES", "GridModelConfig"]

#: The frequency profiles of a simulated PMU (:class:`vpp.sim.frequency.FrequencyProfile`).
PROFILES = ("constant", "ramp", "step", "oscillation", "event", "csv")


class GridModelConfig(BaseModel):
    """Parameters of the single-area model (defaults: a 100 MW area, see docs/grid.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nominal_hz: float = Field(default=50.0, gt=0, description="f0, Hz")
    base_mw: float = Field(default=100.0, gt=0, description="system base S, MW")
    inertia_s: float = Field(default=5.0, gt=0, description="H on the system base, s")
    damping_pu: float = Field(default=1.0, ge=0, description="D, pu power per pu frequency")
    droop_pu: float = Field(default=0.05, gt=0, le=1, description="governor droop R, pu")
    governor_time_s: float = Field(default=0.5, gt=0, description="Tg, s")
    reheat_time_s: float = Field(default=7.0, ge=0, description="Trh, s; 0 = no reheat")
    hp_fraction: float = Field(default=0.3, ge=0, le=1, description="Fhp, of turbine power")
    governor_limit_pu: float | None = Field(
        default=None, gt=0, description="clamp of the governor valve, pu of S; None = none"
    )
    max_step_s: float = Field(default=0.005, gt=0, le=0.1, description="RK4 sub-step, s")
