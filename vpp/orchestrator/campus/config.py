"""Configuration of the campus aggregator: :class:`FleetConfig` and :class:`DispatchConfig`.

Both are frozen pydantic models with documented defaults; validate a mapping (a YAML
section) with :func:`vpp.validation.validate_model`, which turns the first problem into a
:class:`vpp.errors.ConfigError` whose ``field`` is the dotted name of the offending key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["STRATEGIES", "DispatchConfig", "FleetConfig", "Strategy"]

#: The dispatch strategies by name (see docs/orchestrator-campus.md).
Strategy = Literal["proportional", "balanced", "priority"]
STRATEGIES: tuple[Strategy, ...] = ("proportional", "balanced", "priority")


class FleetConfig(BaseModel):
    """Fleet state settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offline_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="a unit whose last heartbeat or telemetry is older than this is offline",
    )
    initial_capacity: int = Field(
        default=1024, ge=1, le=10_000_000, description="unit slots allocated up front"
    )
    max_future_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="heartbeat or telemetry sent (envelope ts) more than this after its "
        "receipt is refused",
    )
    max_age_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="heartbeat or telemetry sent more than this before its receipt is refused",
    )


class DispatchConfig(BaseModel):
    """Dispatch settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_strategy: Strategy = Field(
        default="proportional", description="strategy used when a request names none"
    )
    balance_horizon_h: float = Field(
        default=0.25,
        gt=0,
        le=24,
        description="balanced: hours over which the setpoints would bring units to one SOC",
    )

