"""Configuration of the campus aggregator: :class:`FleetConfig` and :class:`DispatchConfig`.

Both are frozen pydantic models with documented defaults; validate a mapping (a YAML
section) with :func:`vpp.validation.validate_model`, which turns the first problem into a
:class:`vpp.errors.ConfigError` whose ``field`` is the dotted name of the offending key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vpp.orchestrator.bus.receipt import ReceiptWindow

__all__ = ["STRATEGIES", "DispatchConfig", "FleetConfig", "Strategy"]

#: The dispatch strategies by name (see docs/orchestrator-campus.md).
Strategy = Literal["proportional", "balanced", "priority"]
STRATEGIES: tuple[Strategy, ...] = ("proportional", "balanced", "priority")


class FleetConfig(ReceiptWindow):
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

