"""The ``api`` section of the site configuration: where the HTTP API listens and who
may use it.

Each user has a credential (a password, a bearer token, or both, stored only as scrypt
hashes made by ``vpp api hash``) and the bus identity it acts as: the API sends that
user's commands with that identity's Curve key, so the command servers apply the
identity's roles and audit it by name, exactly as for ``vpp ctl``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ApiSection", "ApiUser"]


class ApiUser(BaseModel):
    """One user of the HTTP API."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    identity: str = Field(description="the bus identity this user acts as (its roles apply)")
    password_hash: str | None = Field(
        default=None, description="scrypt hash of the password (`vpp api hash`)"
    )
    token_hash: str | None = Field(
        default=None, description="scrypt hash of a bearer token (`vpp api hash --token`)"
    )

    @model_validator(mode="after")
    def _has_a_credential(self) -> ApiUser:
        if self.password_hash is None and self.token_hash is None:
            raise ValueError("a user needs password_hash or token_hash")
        for h in (self.password_hash, self.token_hash):
            parts = (h or "").split("$")
            if h is not None and (len(parts) != 6 or parts[0] != "scrypt"
                                  or not all(x.isdigit() for x in parts[1:4])):  # fmt: skip
                raise ValueError("not a hash made by `vpp api hash` (scrypt$N$r$p$salt$hash)")
        return self


class ApiSection(BaseModel):
    """The HTTP API and dashboard (a role process ``api`` started by ``vpp run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free one)")
    users: dict[str, ApiUser] = Field(
        default_factory=dict,
        description="users by name; none: `vpp run` makes a one-run operator token and "
        "prints the dashboard's address with it",
    )
    tls_cert: str | None = Field(default=None, description="PEM certificate file: HTTPS")
    tls_key: str | None = Field(default=None, description="PEM private key file of tls_cert")
    session_ttl_s: float = Field(default=12 * 3600, gt=0, description="login session lifetime")
    stream_interval_s: float = Field(
        default=0.2, ge=0.05, le=10, description="period of the live stream's updates"
    )
    history_window_s: float = Field(
        default=600.0, gt=0, le=86_400, description="seconds of live series kept in memory"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self
