"""Configuration of the grid service: frequency event detection and compliance criteria.

A leaf (pydantic only): the site configuration, which every process loads, takes these
models from here without importing numpy and the detector or the compliance checks that
use them (:mod:`.events`, :mod:`.compliance`, which re-export them).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ComplianceConfig", "EventDetectionConfig"]


class EventDetectionConfig(BaseModel):
    """Thresholds of the detector (defaults: IEGC normal band, see docs/grid.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nominal_hz: float = Field(default=50.0, gt=0, description="Hz")
    low_hz: float = Field(default=49.90, gt=0, description="below: event, Hz")
    high_hz: float = Field(default=50.05, gt=0, description="above: event, Hz")
    rocof_threshold_hz_s: float | None = Field(
        default=0.125, gt=0, description="abs(ROCOF) above: event, Hz/s; None = off"
    )
    hysteresis_hz: float = Field(default=0.01, ge=0, description="recovery margin, Hz")
    hold_s: float = Field(default=5.0, ge=0, description="recovered this long: end, s")

    @model_validator(mode="after")
    def _ordered(self) -> EventDetectionConfig:
        if not self.low_hz < self.nominal_hz < self.high_hz:
            raise ValueError("need low_hz < nominal_hz < high_hz")
        if self.high_hz - self.low_hz <= 2 * self.hysteresis_hz:
            raise ValueError("hysteresis_hz leaves no recovery band between low_hz and high_hz")
        return self


class ComplianceConfig(BaseModel):
    """Criteria and their limits (defaults documented in docs/grid.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline_s: float = Field(default=1.0, gt=0)
    start_fraction: float = Field(default=0.1, gt=0, lt=1)
    max_start_delay_s: float = Field(default=1.0, ge=0)
    full_fraction: float = Field(default=0.9, gt=0, le=1)
    max_full_delay_s: float = Field(default=10.0, ge=0)
    accuracy_delay_s: float = Field(default=2.0, ge=0)
    max_rms_error_pct: float = Field(default=5.0, gt=0, description="% of rating")
    max_abs_error_pct: float = Field(default=10.0, gt=0, description="% of rating")
    max_rel_rms_error_pct: float = Field(default=25.0, gt=0, description="% of rms expected")
    min_expected_pct: float = Field(default=1.0, ge=0, description="% of rating")
