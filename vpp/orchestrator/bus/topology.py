"""Where every process of a site listens: the ZeroMQ endpoints derived from the config.

One events broker (an XSUB/XPUB proxy run by a launcher) carries every PUB/SUB
message: publishers connect to ``events_in``, subscribers to ``events_out``, so no
process needs to know where the others are. Each process that takes commands binds its
own ROUTER at ``commands[name]``: the field controllers, ``campus``, ``grid`` and
``market``. With ``transport: ipc`` the endpoints are files in the run directory; with
``tcp`` they are ``host:port`` from ``ports``, the host being ``hosts[name]`` (``hosts
["broker"]`` for the broker) or else ``host``, so processes can run on several hosts
(``vpp run --only``); every command endpoint needs Curve keys unless ``insecure``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.orchestrator.bus.config import BusConfig
from vpp.validation import config_error

__all__ = ["SERVICES", "BusSection", "Topology"]

#: Processes other than the field controllers, in start order.
SERVICES = ("campus", "grid", "market")


class BusSection(BaseModel):
    """The ``bus`` section of the site configuration."""

    model_config = ConfigDict(extra="forbid")
    transport: Literal["ipc", "tcp"] = "ipc"
    dir: Path | None = Field(
        default=None, description="ipc: directory of the socket files; None = the run dir"
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


@dataclasses.dataclass(frozen=True)
class Topology:
    """The endpoints of one run of a site (see the module docstring)."""

    events_in: str
    events_out: str
    commands: dict[str, str]
    bus: BusSection

    @classmethod
    def build(cls, bus: BusSection, fields: list[str], run_dir: Path) -> Topology:
        """Endpoints for field controllers ``fields`` and the services."""
        names = [*fields, *SERVICES]
        if bus.transport == "ipc":
            d = bus.dir or run_dir
            return cls(
                f"ipc://{d}/events-in",
                f"ipc://{d}/events-out",
                {n: f"ipc://{d}/{n}.cmd" for n in names},
                bus,
            )
        missing = [n for n in ("events_in", "events_out", *names) if n not in bus.ports]
        if missing:
            raise config_error(f"bus: tcp transport needs a port for {missing}", "bus.ports")
        if bus.keys_dir is not None:
            absent = [n for n in names if not (bus.keys_dir / f"{n}.key_secret").is_file()]
            if absent:
                raise config_error(
                    f"bus: no key pair for {absent} in {bus.keys_dir} "
                    "(vpp keys --dir DIR --site CONFIG makes them)",
                    "bus.keys_dir",
                )
        def at(name: str, port: str) -> str:
            # Each process binds its own address and the others connect to it there.
            return f"tcp://{bus.hosts.get(name, bus.host)}:{bus.ports[port]}"

        return cls(
            at("broker", "events_in"),
            at("broker", "events_out"),
            {n: at(n, n) for n in names},
            bus,
        )

    def bus_config(self, name: str) -> BusConfig:
        """The BusConfig of process ``name`` (its own command endpoint, its key pair)."""
        return BusConfig(
            name=name,
            events=self.events_out,
            commands=self.commands.get(name, self.commands[SERVICES[0]]),
            keys_dir=self.bus.keys_dir,
            insecure=self.bus.insecure,
            command_timeout_s=self.bus.command_timeout_s,
            command_retries=self.bus.command_retries,
            heartbeat_interval_s=self.bus.heartbeat_interval_s,
            liveness_misses=self.bus.liveness_misses,
        )
