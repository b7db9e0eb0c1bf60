"""The receipt window: how far a received message's own time may be from its receipt.

Shared by the sections of the services that use other processes' messages (the campus
fleet, the grid service), and applied by :class:`vpp.orchestrator.bus.liveness.Roster`.
A message dated far in the future would otherwise outlive every real one (one such
frequency sample made the grid drop every later sample); one dated long ago is stale.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ReceiptWindow"]


class ReceiptWindow(BaseModel):
    """``max_future_s`` and ``max_age_s``; subclassed by the sections that have them."""

    # Not frozen here: each subclass says whether it is.
    model_config = ConfigDict(extra="forbid")

    max_future_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="a message dated (its envelope ts, or the t of a sample or decision) "
        "more than this after its receipt is refused, s",
    )
    max_age_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="a message dated more than this before its receipt is refused, s",
    )
