"""Limits on what commands may ask (a leaf: pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CommandLimits"]


class CommandLimits(BaseModel):
    """What a process accepts in its commands beyond their models' own checks (each a
    limit with a default; in the field controllers' and the campus's configuration)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    schedule_block_min_s: float = Field(
        default=1.0, gt=0, description="shortest schedule block, s"
    )
    schedule_block_max_s: float = Field(
        default=86_400.0, gt=0, description="longest schedule block, s"
    )
    schedule_max_blocks: int = Field(
        default=1000, ge=1, le=100_000, description="most blocks in one schedule"
    )
    schedule_max_age_s: float = Field(
        default=86_400.0, ge=0, description="how far in the past a schedule may start, s"
    )
    schedule_max_lead_s: float = Field(
        default=8 * 86_400.0, ge=0, description="how far in the future a schedule may start, s"
    )

    @model_validator(mode="after")
    def _order(self) -> CommandLimits:
        if self.schedule_block_min_s > self.schedule_block_max_s:
            raise ValueError("schedule_block_min_s must not exceed schedule_block_max_s")
        return self

