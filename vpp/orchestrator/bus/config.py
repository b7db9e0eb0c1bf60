"""Configuration of the orchestrator bus: endpoints, keys, timeouts, heartbeats.

A leaf: pydantic and nothing of the bus itself, so that the site configuration (which
every process loads) imports neither ZeroMQ nor the bus's sockets; :mod:`.curve` (ZeroMQ)
is imported only when a Curve setup is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vpp.validation import validate_model

if TYPE_CHECKING:
    from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve

__all__ = ["BusConfig", "BusSection"]

_SCHEMES = ("ipc://", "tcp://", "inproc://")


class BusConfig(BaseModel):
    """Where the bus sockets are and how they behave.

    Endpoints are ZeroMQ strings: ``ipc:///run/vpp/events`` on one host,
    ``tcp://10.0.0.5:5560`` across hosts. Keys live in ``keys_dir`` (``NAME.key`` and
    ``NAME.key_secret`` from ``vpp keys``); a command server admits the client keys in
    ``authorized_dir`` (default ``keys_dir/authorized``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="this process: sender id and key pair name")
    events: str = "ipc:///tmp/vpp-events"
    """PUB/SUB endpoint of telemetry, frequency, events and heartbeats."""
    commands: str = "ipc:///tmp/vpp-commands"
    """ROUTER/DEALER endpoint of commands and acks."""
    keys_dir: Path | None = None
    server_key: str = "server"
    """Name of the command server's key pair (clients need its ``.key``)."""
    authorized_dir: Path | None = None
    insecure: bool = False
    """Allow a tcp command endpoint without Curve (clear text, anyone may command)."""
    command_timeout_s: float = Field(default=1.0, gt=0.0)
    command_retries: int = Field(default=2, ge=0)
    dedup_size: int = Field(default=4096, ge=1)
    heartbeat_interval_s: float = Field(default=1.0, gt=0.0)
    liveness_misses: int = Field(default=3, ge=1)
    hwm: int = Field(default=10_000, ge=1)

    @field_validator("events", "commands")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith(_SCHEMES):
            raise ValueError(f"endpoint {v!r} must start with one of {_SCHEMES}")
        return v

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> BusConfig:
        """Validate a mapping (e.g. a YAML section); :class:`ConfigError` names the field."""
        return validate_model(cls, data, "bus configuration")

    def server_curve(self) -> ServerCurve | None:
        """The Curve setup of a command server named :attr:`name` (None without keys)."""
        if self.keys_dir is None:
            return None
        from vpp.orchestrator.bus.curve import ServerCurve  # ZeroMQ: see the module docstring

        authorized = self.authorized_dir or self.keys_dir / "authorized"
        return ServerCurve(self.keys_dir / f"{self.name}.key_secret", authorized)

    def client_curve(self) -> ClientCurve | None:
        """The Curve setup of a command client named :attr:`name` (None without keys)."""
        if self.keys_dir is None:
            return None
        from vpp.orchestrator.bus.curve import ClientCurve  # ZeroMQ: see the module docstring

        return ClientCurve(
            self.keys_dir / f"{self.name}.key_secret", self.keys_dir / f"{self.server_key}.key"
        )


class BusSection(BaseModel):
    """The ``bus`` section of the site configuration."""

    model_config = ConfigDict(extra="forbid")
    transport: Literal["ipc", "tcp"] = "ipc"
    dir: Path | None = Field(
        default=None,
        description="run directory: ipc sockets, site.json, keys made at start; None = "
        "$VPP_RUN_DIR, $XDG_RUNTIME_DIR/vpp/<site.name> or /tmp/vpp-<uid>/<site.name>",
    )
    host: str = Field(default="127.0.0.1", description="tcp: address of every process")
    hosts: dict[str, str] = Field(
        default_factory=dict,
        description="tcp: address of a process (or of the broker) on another host",
    )
    ports: dict[str, int] = Field(
        default_factory=dict,
        description="tcp: port of events_in, events_out and each process name",
    )
    keys_dir: Path | None = Field(default=None, description="CurveZMQ keys (vpp keys)")
    insecure: bool = Field(default=False, description="tcp commands without Curve")
    command_timeout_s: float = Field(default=1.0, gt=0)
    command_retries: int = Field(default=2, ge=0)
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    liveness_misses: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _curve(self) -> BusSection:
        # Commands across hosts in clear text would let anyone on the network command
        # batteries: tcp needs keys unless the user says otherwise in so many words.
        if self.transport == "tcp" and self.keys_dir is None and not self.insecure:
            raise ValueError(
                "tcp command endpoints need CurveZMQ keys: set keys_dir (vpp keys --site "
                "CONFIG makes them) or insecure: true"
            )
        return self
