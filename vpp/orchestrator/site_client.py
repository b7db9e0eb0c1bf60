"""Talk to a running site as one identity: find it, read its ``site.json``, send commands.

:func:`find_site` computes the run directory of a configuration the way ``vpp run``
does (:mod:`vpp.orchestrator.rundir`) and reads the record of the launcher that holds it
into a :class:`RunningSite`: its command endpoints, events endpoint, keys directory,
field controllers and the owner of each unit. A :class:`SiteClient` sends commands to
the site's processes with the Curve key pair of one identity (``operator`` by default)
from the site's keys directory; what the identity may do is decided by each process
from that key, never by this side. Parameters are checked against the command's model
before sending (:func:`~vpp.orchestrator.bus.command_models.check_command`), so a typo
is an error here rather than an audited refusal there.

Used by ``vpp ctl`` and the HTTP API; a user's own program may use it too (see
docs/examples/send_command.py)::

    async with SiteClient(find_site(), "operator") as site:
        ack = await site.call_unit("control", "bess-1", action="emergency_stop")
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpp.config.models import SiteConfig
from vpp.errors import VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.command_models import check_command
from vpp.orchestrator.bus.commands import Client
from vpp.orchestrator.bus.curve import ClientCurve
from vpp.orchestrator.rundir import SITE_FILE, held, site_dir

__all__ = [
    "IdentityKeyError",
    "NoSiteError",
    "RunningSite",
    "SiteClient",
    "UnknownTargetError",
    "find_site",
    "read_site",
]


class NoSiteError(VppError):
    """No live launcher holds the run directory (none started, or it ended)."""


class IdentityKeyError(VppError):
    """The identity's secret key is not in (or not readable from) the site's keys dir."""


class UnknownTargetError(VppError, KeyError):
    """A process or unit the running site does not have."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; this one is a sentence.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RunningSite:
    """What a launcher's ``site.json`` says of the site it runs."""

    dir: Path
    record: Path
    pid: int
    started: float
    site: str
    config: str
    transport: str
    commands: Mapping[str, str]
    events: str
    keys_dir: Path | None
    fields: tuple[str, ...]
    units: Mapping[str, Mapping[str, Any]]
    """Unit id -> ``field`` (the controller that owns it) and ``rated_power_kw``."""
    insecure: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def kind(self, process: str) -> str:
        """``field`` for a field controller, else the service's name (``campus``, ...)."""
        return "field" if process in self.fields else process

    def owner(self, unit: str) -> str:
        """The field controller of ``unit``."""
        info = self.units.get(unit)
        if info is None:
            raise UnknownTargetError(f"no unit {unit!r} in site {self.site!r}; known: "
                                     f"{sorted(self.units)}")  # fmt: skip
        return str(info["field"])

    def rating_kw(self, unit: str) -> float:
        """The configured rated power of ``unit``, kW."""
        self.owner(unit)
        return float(self.units[unit]["rated_power_kw"])


def read_site(directory: Path) -> RunningSite:
    """The running site of run directory ``directory``: its ``site.json`` when a live
    launcher holds it, else that of a part (``vpp run --only``); NoSiteError if none."""
    records = [directory / SITE_FILE, *sorted(directory.glob("site-*.json"))]
    existing = [r for r in records if r.exists()]
    live = [r for r in existing if held(r)]
    if not live:
        if existing and not os.access(existing[0], os.R_OK):
            raise NoSiteError(f"cannot read {existing[0]}: the site runs as another user")
        why = "it has ended" if existing else "none started"
        raise NoSiteError(f"no running site in {directory} ({why}; start one with vpp run)")
    try:
        data = json.loads(live[0].read_text())
        keys = data["keys_dir"]
        return RunningSite(
            dir=directory,
            record=live[0],
            pid=int(data["pid"]),
            started=float(data["started"]),
            site=str(data["site"]),
            config=str(data["config"]),
            transport=str(data["transport"]),
            commands=dict(data["commands"]),
            events=str(data["events"]),
            keys_dir=Path(keys) if keys is not None else None,
            fields=tuple(data["fields"]),
            units=dict(data["units"]),
            insecure=bool(data.get("insecure", False)),
            raw=data,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NoSiteError(f"{live[0]}: not a site record ({type(exc).__name__}: {exc})") from None


def find_site(config: str | Path | None = None, site: SiteConfig | None = None) -> RunningSite:
    """The running site of configuration file ``config`` (None: the embedded site), or
    of the already loaded ``site``."""
    if site is None:
        from vpp.config import load

        site = load(str(config) if config is not None else None)
    return read_site(site_dir(site))


class SiteClient:
    """Commands to the processes of ``site`` as ``identity`` (``async with`` it).

    ``timeout`` is seconds per attempt, ``retries`` the resends of the same command (a
    server runs a retried command once). One DEALER per process, opened on first use.
    """

    def __init__(
        self,
        site: RunningSite,
        identity: str = "operator",
        *,
        timeout: float = 2.0,
        retries: int = 1,
    ) -> None:
        self.site = site
        self.identity = identity
        self.timeout = timeout
        self.retries = retries
        self._secret: Path | None = None
        if site.keys_dir is not None:
            secret = site.keys_dir / f"{identity}.key_secret"
            if not os.access(secret, os.R_OK):
                why = "not readable" if secret.exists() else "missing"
                raise IdentityKeyError(
                    f"no key for identity {identity!r}: {secret} is {why} (the site's "
                    "keys dir; vpp keys --dir DIR NAME makes a pair, security.identities "
                    "gives it roles)"
                )
            self._secret = secret
        self._clients: dict[str, Client] = {}

    async def __aenter__(self) -> SiteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection."""
        clients, self._clients = self._clients, {}
        for c in clients.values():
            await c.aclose()

    async def _client(self, process: str) -> Client:
        client = self._clients.get(process)
        if client is not None:
            return client
        endpoint = self.site.commands.get(process)
        if endpoint is None:
            raise UnknownTargetError(f"no process {process!r} in site {self.site.site!r}; "
                                     f"known: {sorted(self.site.commands)}")  # fmt: skip
        curve = None
        if self._secret is not None and self.site.keys_dir is not None:
            curve = ClientCurve(self._secret, self.site.keys_dir / f"{process}.key")
        client = Client(endpoint, name=self.identity, curve=curve, insecure=self.site.insecure,
                        timeout=self.timeout, retries=self.retries)  # fmt: skip
        await client.__aenter__()
        self._clients[process] = client
        return client

    async def call(
        self, process: str, command: str, params: Mapping[str, Any] | None = None
    ) -> s.Ack:
        """Send ``command`` to ``process`` and return its ack (``ok`` False: refused or
        failed, ``refused`` says which). Raises CommandError for parameters the command's
        model refuses (nothing sent), CommandTimeoutError when no ack came."""
        params = dict(params or {})
        check_command(self.site.kind(process), command, params, where=process)
        client = await self._client(process)
        return await client.request(command, params)

    async def call_unit(self, command: str, unit: str, **params: Any) -> s.Ack:
        """Send ``command`` about ``unit`` to the field controller that owns it."""
        return await self.call(self.site.owner(unit), command, {"unit": unit, **params})
