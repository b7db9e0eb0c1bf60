"""What both outstations' configurations share: where they listen and whom they admit
(pydantic only)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["OutstationConfig"]


class OutstationConfig(BaseModel):
    """The settings every outstation has; each protocol's model adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="serve this protocol")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    point_map: str | None = Field(
        default=None, description="point map file (YAML); None: the bundled default map"
    )
    masters: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"], min_length=1,
        description="IP addresses of the admitted masters; any other peer is closed at once",
    )  # fmt: skip
    max_connections: int = Field(
        default=2, ge=1, le=16, description="connections open at once (the rest are refused)"
    )
    select_timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="a select (select-before-operate) expires after this long, s",
    )  # fmt: skip

    @field_validator("masters")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        # The transport is the authority: an entry that is not an address admits nobody
        # anyone meant, so it is a configuration error rather than a silent no-match.
        for ip in value:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"{ip!r} is not an IP address") from None
        return value
