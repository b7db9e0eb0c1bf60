"""Where every process of a site listens: the ZeroMQ endpoints derived from the config.

One events broker (an XSUB/XPUB proxy run by a launcher) carries every PUB/SUB
message: publishers connect to ``events_in``, subscribers to ``events_out``, so no
process needs to know where the others are. Each process that takes commands binds its
own ROUTER at ``commands[name]``: the field controllers, ``campus``, ``grid`` and
``market``. With ``transport: ipc`` the endpoints are files in the run directory; with
``tcp`` they are ``host:port`` from ``ports``, the host being ``hosts[name]`` (``hosts
["broker"]`` for the broker) or else ``host``, so processes can run on several hosts
(``vpp run --only``); every command endpoint needs Curve keys unless ``insecure``.

Keys: every process has a key pair named by its id in ``keys_dir`` (``vpp keys --site``
makes them), the broker one named ``broker``. A site on ``ipc`` without ``keys_dir`` gets
keys made at start in ``keys/`` of its socket directory (mode 0700), so its bus is
authenticated too; only ``insecure: true`` runs a bus without identities. The factories
here (:meth:`Topology.publisher`, :meth:`~Topology.subscriber`, :meth:`~Topology.server`,
:meth:`~Topology.client_curve`, :meth:`~Topology.broker`) give each socket its keys and
each command server its :class:`~vpp.orchestrator.bus.auth.Authorizer`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from vpp.orchestrator.bus.auth import Authorizer, Policy, RateLimiter, SecuritySection
from vpp.orchestrator.bus.broker import Broker
from vpp.orchestrator.bus.commands import Audit, Handler, Server
from vpp.orchestrator.bus.config import BusConfig, BusSection
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve
from vpp.orchestrator.bus.keys import site_keys
from vpp.orchestrator.bus.pubsub import Publisher, Subscriber
from vpp.validation import config_error

__all__ = ["API", "BROKER", "PEOPLE", "SCADA", "SERVICES", "BusSection", "Topology", "identities"]

#: Processes other than the field controllers, in start order.
SERVICES = ("campus", "grid", "market")
#: The key pair of the events broker.
BROKER = "broker"
#: The HTTP API's process (it reads the bus; it serves no bus commands).
API = "api"
#: The SCADA outstations' process (it reads the bus and commands as ``scada``).
SCADA = "scada"
#: Identities for people (``vpp ctl``, the API): they command and read, never publish.
PEOPLE = ("operator", "viewer")


def identities(fields: list[str]) -> list[str]:
    """Every key pair a site needs: its processes, the launcher, the API, the SCADA
    gateway, the broker, people."""
    return [*fields, *SERVICES, "launcher", API, SCADA, BROKER, *PEOPLE]


@dataclasses.dataclass(frozen=True)
class Topology:
    """The endpoints of one run of a site (see the module docstring)."""

    events_in: str
    events_out: str
    commands: dict[str, str]
    bus: BusSection
    fields: tuple[str, ...] = ()
    security: SecuritySection = dataclasses.field(default_factory=SecuritySection)
    keys_dir: Path | None = None
    """Where the key pairs are (``bus.keys_dir``, or the ones made for an ipc run)."""

    @classmethod
    def build(
        cls,
        bus: BusSection,
        fields: list[str],
        run_dir: Path,
        security: SecuritySection | None = None,
        *,
        make_keys: bool = False,
    ) -> Topology:
        """Endpoints for field controllers ``fields`` and the services; ``make_keys``: an
        ipc site without ``keys_dir`` (and not ``insecure``) gets keys made in its socket
        directory (the launcher asks for them; a test may not)."""
        names = [*fields, *SERVICES]
        sec = security or SecuritySection()
        if bus.transport == "ipc":
            d = bus.dir or run_dir
            keys = bus.keys_dir
            if keys is None and make_keys and not bus.insecure:
                keys = d / "keys"
                # The configured identities too: a person's key is there for vpp ctl.
                extra = [n for n in sec.identities if n not in identities(fields)]
                site_keys(keys, [*identities(fields), *extra])
            return cls(
                f"ipc://{d}/events-in",
                f"ipc://{d}/events-out",
                {n: f"ipc://{d}/{n}.cmd" for n in names},
                bus,
                tuple(fields),
                sec,
                keys,
            )
        missing = [n for n in ("events_in", "events_out", *names) if n not in bus.ports]
        if missing:
            raise config_error(f"bus: tcp transport needs a port for {missing}", "bus.ports")
        if bus.keys_dir is not None:
            # Every process needs its peers' public keys (its own secret is read at start).
            need = [n for n in identities(fields) if n not in PEOPLE]
            absent = [n for n in need if not (bus.keys_dir / f"{n}.key").is_file()]
            if absent:
                raise config_error(
                    f"bus: no key for {absent} in {bus.keys_dir} "
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
            tuple(fields),
            sec,
            bus.keys_dir,
        )

    # ---- who is who ----

    def kind(self, name: str) -> str:
        """``field`` for a field controller, else the service's name."""
        return "field" if name in self.fields else name

    def policy(self) -> Policy:
        """The site's roles and identities. On a bus without keys (``insecure``, or a
        test's topology) no peer has an identity: each is the ``anonymous`` role, an
        operator unless the configuration names another."""
        policy = Policy.build(self.security, self.fields)
        if not self.authenticated and policy.anonymous is None:
            policy.anonymous = "operator"
        return policy

    @property
    def authenticated(self) -> bool:
        """Whether the bus has identities (keys); without, every peer is anonymous."""
        return self.keys_dir is not None

    # ---- sockets with their keys ----

    def _secret(self, name: str) -> Path:
        assert self.keys_dir is not None
        return self.keys_dir / f"{name}.key_secret"

    def client_curve(self, name: str, server: str) -> ClientCurve | None:
        """The Curve keys of ``name`` as a client of ``server`` (None without keys)."""
        if self.keys_dir is None:
            return None
        return ClientCurve(self._secret(name), self.keys_dir / f"{server}.key")

    def server_curve(self, name: str) -> ServerCurve | None:
        """The Curve keys of server ``name``; every identity of the site may connect,
        what it may do is the authorizer's decision (None without keys)."""
        if self.keys_dir is None:
            return None
        return ServerCurve(self._secret(name), self.keys_dir)

    def authorizer(self, name: str) -> Authorizer:
        """The decision of command server ``name`` (roles, rate per identity)."""
        sec = self.security
        limiter = RateLimiter(sec.command_rate_per_s, sec.command_burst)
        return Authorizer(self.policy(), self.kind(name), name, limiter)

    def server(
        self, name: str, handlers: dict[str, Handler], audit: Audit | None = None,
        dedup_size: int = 4096,
    ) -> Server:  # fmt: skip
        """The command server of process ``name``: its endpoint, keys, authorizer, limits,
        and the model of each command it takes."""
        # Here, not at the top: the command models import the configuration, which
        # imports this module.
        from vpp.orchestrator.bus.command_models import check_command

        return Server(
            self.commands[name],
            handlers,
            name=name,
            curve=self.server_curve(name),
            insecure=self.bus.insecure,
            dedup_size=dedup_size,
            authorizer=self.authorizer(name),
            audit=audit,
            check=functools.partial(check_command, self.kind(name), where=name),
            max_message_bytes=self.security.max_message_bytes,
        )

    def publisher(self, name: str, hwm: int = 10_000) -> Publisher:
        """A publisher of ``name`` connected to the broker (with its keys when there are)."""
        return Publisher(self.events_in, bind=False, hwm=hwm,
                         curve=self.client_curve(name, BROKER))  # fmt: skip

    def subscriber(
        self, name: str, topics: tuple[str, ...] = ("",), hwm: int = 10_000
    ) -> Subscriber:
        """A subscriber of ``name`` connected to the broker; with keys it takes only
        messages whose sender is their authenticated publisher."""
        return Subscriber(self.events_out, topics, hwm=hwm,
                          curve=self.client_curve(name, BROKER),
                          authenticated=self.authenticated)  # fmt: skip

    def broker(self) -> Broker:
        """The events broker: Curve on both ends with the site's policy when there are keys."""
        curve = None
        if self.keys_dir is not None:
            curve = ServerCurve(self._secret(BROKER), self.keys_dir)
        sec = self.security
        rate = RateLimiter(sec.publish_rate_per_s, sec.publish_burst)
        return Broker(self.events_in, self.events_out, curve=curve, policy=self.policy(),
                      max_message_bytes=sec.max_message_bytes, publish_rate=rate)  # fmt: skip

    def bus_config(self, name: str) -> BusConfig:
        """The BusConfig of process ``name`` (its own command endpoint, its key pair)."""
        return BusConfig(
            name=name,
            events=self.events_out,
            commands=self.commands.get(name, self.commands[SERVICES[0]]),
            keys_dir=self.keys_dir,
            insecure=self.bus.insecure,
            command_timeout_s=self.bus.command_timeout_s,
            command_retries=self.bus.command_retries,
            heartbeat_interval_s=self.bus.heartbeat_interval_s,
            liveness_misses=self.bus.liveness_misses,
        )
