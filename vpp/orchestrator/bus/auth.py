"""Who may do what on the bus: identities, roles, and the decision for each command.

An *identity* is the name of a Curve key pair (``NAME.key`` in the keys directory): the
transport authenticates it (ZAP admits the key and names it), so a name written inside a
message never counts. Each identity has *roles* (``security.identities``), and each role
*grants* commands on servers and units (``security.roles``):

- ``commands``: command names, or ``"*"``;
- ``servers``: ``KIND:NAME`` patterns (fnmatch), the kind being ``field``, ``campus``,
  ``grid`` or ``market`` and the name the process's id: ``field:*`` is every field
  controller, ``field:field-a`` one of them, ``*`` every server;
- ``units``: patterns a command's ``unit`` parameter must match (``*``: any unit, and a
  command without a unit).

A role may also ``publish`` on the events bus (the processes of the site do; an operator
or a viewer does not) and ``subscribe`` to it. The built-in roles and identities below
are the least each process needs; the configuration adds to them or replaces a role by
name. An identity with no role, and a peer with no identity (no Curve: ``insecure`` or a
test without keys), get nothing unless ``anonymous`` names a role.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.errors import VppError

__all__ = [
    "BUILTIN_IDENTITIES",
    "BUILTIN_ROLES",
    "Authorizer",
    "Decision",
    "Grant",
    "NotAuthorisedError",
    "Policy",
    "RateLimiter",
    "Role",
    "SecuritySection",
]


class NotAuthorisedError(VppError, PermissionError):
    """A command refused because its authenticated sender may not use it here."""

    def __init__(self, message: str, *, identity: str, command: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.identity = identity
        self.command = command
        self.where = where


class Grant(BaseModel):
    """Commands a role may send, to which servers, about which units."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    commands: tuple[str, ...] = Field(min_length=1, description="command names or '*'")
    servers: tuple[str, ...] = Field(
        default=("*",), description="KIND:NAME patterns, e.g. 'field:*', 'campus:campus'"
    )
    units: tuple[str, ...] = Field(
        default=("*",), description="patterns the command's 'unit' must match; '*' any"
    )

    def allows(self, command: str, server: str, unit: str | None) -> bool:
        """Whether this grant covers ``command`` on ``server`` (``KIND:NAME``) for ``unit``."""
        if "*" not in self.commands and command not in self.commands:
            return False
        if not any(fnmatch.fnmatchcase(server, p) for p in self.servers):
            return False
        if "*" in self.units:
            return True
        return unit is not None and any(fnmatch.fnmatchcase(unit, p) for p in self.units)


class Role(BaseModel):
    """What an identity holding this role may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    grants: tuple[Grant, ...] = ()
    publish: bool = Field(default=False, description="may publish on the events bus")
    subscribe: bool = Field(default=True, description="may read the events bus")


_READ = ("status", "safety_history", "fleet", "events", "bids", "results")

#: The least each process of a site needs, the two people roles, and a SCADA gateway's.
BUILTIN_ROLES: dict[str, Role] = {
    # A field controller publishes its units' telemetry and takes commands; it sends none.
    "field": Role(publish=True),
    # The campus sets the base power (or schedule) of the units it aggregates.
    "campus": Role(
        publish=True,
        grants=(
            Grant(commands=("set_base", "set_power", "set_schedule", "status"),
                  servers=("field:*",)),
        ),
    ),
    # The grid service sets each unit's share of the frequency response.
    "grid": Role(
        publish=True,
        grants=(Grant(commands=("set_participation", "status"), servers=("field:*",)),),
    ),
    # The market gateway hands the campus its schedule.
    "market": Role(
        publish=True,
        grants=(Grant(commands=("set_schedule", "fleet", "status"), servers=("campus:*",)),),
    ),
    # The launcher publishes what happens to the processes it supervises.
    "launcher": Role(publish=True),
    # The HTTP API reads the bus and asks processes what only they know; its users'
    # commands go out with their own identities' keys, never with this one.
    "api": Role(grants=(Grant(commands=_READ),)),
    "operator": Role(grants=(Grant(commands=("*",)),)),
    "viewer": Role(grants=(Grant(commands=_READ),)),
    # The SCADA gateway (IEC 104 and DNP3 outstations for the load despatch centre): AGC
    # and active power set-points to the campus, enable/disable to the units, what a
    # viewer reads; it publishes what its masters did. Which of these its masters may
    # actually ask is narrower still: the points ``scada.commands`` allows.
    "scada": Role(
        publish=True,
        grants=(
            Grant(commands=("agc", "set_target"), servers=("campus:*",)),
            Grant(commands=("control",), servers=("field:*",)),
            Grant(commands=_READ),
        ),
    ),
}

#: Identities every site has besides its field controllers (each has the role of its name).
BUILTIN_IDENTITIES: dict[str, tuple[str, ...]] = {
    "campus": ("campus",),
    "grid": ("grid",),
    "market": ("market",),
    "launcher": ("launcher",),
    "api": ("api",),
    "scada": ("scada",),
    "operator": ("operator",),
    "viewer": ("viewer",),
}


class SecuritySection(BaseModel):
    """The ``security`` section of the site configuration: roles, identities and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: dict[str, Role] = Field(
        default_factory=dict, description="roles added to (or replacing) the built-in ones"
    )
    identities: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="identity (key name) -> roles; added to the built-in identities",
    )
    anonymous: str | None = Field(
        default=None, description="role of a peer without a Curve identity (None: none)"
    )
    max_message_bytes: int = Field(
        default=256 * 1024, ge=4096, description="larger bus messages are dropped"
    )
    command_rate_per_s: float = Field(
        default=50.0, gt=0, description="commands per second one identity may send"
    )
    command_burst: int = Field(default=200, ge=1, description="commands above the rate")
    publish_rate_per_s: float = Field(
        default=20_000.0, gt=0, description="messages per second one identity may publish"
    )
    publish_burst: int = Field(default=50_000, ge=1, description="messages above the rate")

    @model_validator(mode="after")
    def _known_roles(self) -> SecuritySection:
        known = BUILTIN_ROLES.keys() | self.roles.keys()
        used = {r for rs in self.identities.values() for r in rs}
        if self.anonymous is not None:
            used.add(self.anonymous)
        unknown = sorted(used - known)
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; known: {sorted(known)}")
        return self


@dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`Authorizer.decide`."""

    ok: bool
    role: str = ""
    reason: str = ""
    refused: str = ""
    """Why not, as a counter name: ``not_authorised`` or ``rate_limited``."""


@dataclass
class Policy:
    """Roles and who holds them, for one site (see the module docstring)."""

    roles: dict[str, Role]
    identities: dict[str, tuple[str, ...]]
    anonymous: str | None = None

    @classmethod
    def build(cls, section: SecuritySection, field_ids: Iterable[str]) -> Policy:
        """The built-in roles and identities with ``section``'s over them."""
        roles = {**BUILTIN_ROLES, **section.roles}
        identities: dict[str, tuple[str, ...]] = {f: ("field",) for f in field_ids}
        identities.update(BUILTIN_IDENTITIES)
        identities.update(section.identities)
        # The section checked its roles exist (a field controller's "field" is built in).
        return cls(roles, identities, section.anonymous)

    @classmethod
    def allow_all(cls) -> Policy:
        """Every peer an operator (tests of the bus itself; never a site's processes)."""
        return cls(dict(BUILTIN_ROLES), {}, "operator")

    def roles_of(self, identity: str) -> tuple[str, ...]:
        """The roles of ``identity`` ("" = a peer without identity: the anonymous role)."""
        if not identity:
            return (self.anonymous,) if self.anonymous else ()
        return self.identities.get(identity, ())

    def may_publish(self, identity: str) -> bool:
        """Whether ``identity`` may publish on the events bus."""
        return any(self.roles[r].publish for r in self.roles_of(identity))

    def may_subscribe(self, identity: str) -> bool:
        """Whether ``identity`` may read the events bus."""
        return any(self.roles[r].subscribe for r in self.roles_of(identity))

    def decide(self, identity: str, command: str, server: str, unit: str | None) -> Decision:
        """May ``identity`` send ``command`` to ``server`` (``KIND:NAME``) about ``unit``?"""
        roles = self.roles_of(identity)
        for r in roles:
            if any(g.allows(command, server, unit) for g in self.roles[r].grants):
                return Decision(True, r)
        who = identity or "a peer without identity"
        if not roles:
            return Decision(False, "", f"{who} has no role", "not_authorised")
        about = f" for unit {unit!r}" if unit is not None else ""
        why = f"{who} (roles {list(roles)}) may not {command} on {server}{about}"
        return Decision(False, roles[0], why, "not_authorised")


class RateLimiter:
    """A token bucket per identity: ``rate`` per second, up to ``burst`` at once.

    The map of buckets is bounded: only authenticated identities reach it (a handful per
    site), and an anonymous peer shares the bucket of "".
    """

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, identity: str) -> bool:
        """Spend one token of ``identity``; False when its bucket is empty."""
        return self.take_many(identity, 1) == 1

    def take_many(self, identity: str, n: int) -> int:
        """Spend up to ``n`` tokens of ``identity``; how many it had (0 when empty)."""
        now = self._clock()
        tokens, last = self._buckets.get(identity, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        got = min(n, int(tokens))
        self._buckets[identity] = (tokens - got, now)
        return got


@dataclass
class Authorizer:
    """The decision of one command server (``kind``, ``name``) for each command."""

    policy: Policy
    kind: str
    name: str
    limiter: RateLimiter | None = None
    refused: dict[str, int] = field(default_factory=dict)
    """Refusals by reason kind (``not_authorised``, ``rate_limited``)."""

    @property
    def server(self) -> str:
        """``KIND:NAME``, what grants' ``servers`` patterns match."""
        return f"{self.kind}:{self.name}"

    def decide(self, identity: str, command: str, params: Mapping[str, Any]) -> Decision:
        """May ``identity`` run ``command`` with ``params`` here (and within its rate)?"""
        unit = params.get("unit")
        d = self.policy.decide(identity, command, self.server,
                               unit if isinstance(unit, str) else None)  # fmt: skip
        if not d.ok:
            self.refused["not_authorised"] = self.refused.get("not_authorised", 0) + 1
            return d
        if self.limiter is not None and not self.limiter.take(identity):
            self.refused["rate_limited"] = self.refused.get("rate_limited", 0) + 1
            why = f"{identity or 'anonymous'}: more than {self.limiter.rate:g} commands/s"
            return Decision(False, d.role, why, "rate_limited")
        return d
