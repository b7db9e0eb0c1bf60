"""The campus aggregator process: the fleet learnt from the bus, and dispatch over it.

In: ``heartbeat/`` (role ``unit``: the unit is alive; role ``field``: its field
controller is) and ``telemetry/`` (power, SOC, the safety envelope's limits, safety
state). Only what the site configuration says is trusted: the units, their owners,
locations and ratings come from it, commands go to the endpoints of the topology, and a
message is used only when its authenticated sender (``msg.sender``) is the field
controller that owns the unit (:class:`~vpp.orchestrator.bus.liveness.Roster`: other
messages and those dated too far from their receipt are counted and logged once per
kind and sender), so every per-unit and per-field map holds configured ids only. Every
``campus.dispatch_interval_s`` the campus target is split over the eligible units
(:class:`~vpp.orchestrator.campus.dispatch.Dispatcher`) and each setpoint is sent as
``set_base`` {unit, kw} to the unit's field controller; units left out for a reason
other than being offline get 0 kW, so a share that moved elsewhere is not kept twice.
A setpoint the field controller acknowledged is not sent again while it stays the same,
except every ``RESEND_ROUNDS`` rounds and after the unit or its field controller was
offline. Each round publishes an EventMsg kind ``dispatch``.

Liveness: a unit is offline when nothing came from it for ``campus.fleet.offline_timeout_s``
(campus clock, time of receipt); a field controller likewise for its heartbeats. When a
command to a field controller times out, or it went quiet, its units are marked offline
at once, so the next round gives their share to the others; they come back with the
field controller's next heartbeat (after a command timeout: its first heartbeat once
``offline_timeout_s`` has passed, since a process that publishes but does not answer
would otherwise win its share back every round). Field controllers are commanded
concurrently, each with a per-command timeout of at most half the dispatch interval and
no retry (the next round is the retry), so a dead one never delays the others.

Target: ``set_target`` if given, else the ``set_schedule`` block now, else
``campus.target_kw``, else 0; plus, once the load despatch centre sent an ``agc``
set-point, the regulation offset of :class:`~vpp.orchestrator.grid.agc.AgcHandler`
(``campus.agc``: within the reserve, the fleet's headroom, its SOC band and the ramp).
Each round then also publishes an EventMsg kind ``agc``: the offset, its status, and
the SRAS performance of the signal in force and of the service period (docs/agc.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np

from vpp.config.models import SiteConfig
from vpp.errors import CommandError, VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.command_models import (
    Agc,
    CampusFleet,
    CampusSchedule,
    SetTarget,
    check_power,
    check_schedule,
    parse,
)
from vpp.orchestrator.bus.liveness import Roster
from vpp.orchestrator.bus.pubsub import Handler, Subscriber
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.campus import ingest
from vpp.orchestrator.campus.config import Strategy
from vpp.orchestrator.campus.dispatch import Dispatcher, DispatchResult
from vpp.orchestrator.campus.fleet import ELIGIBLE, REASONS, Fleet
from vpp.orchestrator.campus.outbox import RESEND_ROUNDS, SAME_KW, FieldSends, Outbox
from vpp.orchestrator.campus.totals import Aggregate
from vpp.orchestrator.grid.agc import AgcHandler, FleetState
from vpp.orchestrator.grid.agc_performance import AgcPerformance
from vpp.orchestrator.service import Service, params, tune_gc

__all__ = ["EVENT_UNITS", "MAX_SCHEDULES", "RESEND_ROUNDS", "SAME_KW", "Campus", "FieldPeer",
           "serve"]

log = logging.getLogger(__name__)

#: The dispatch event lists per-unit setpoints and exclusions up to this many units; a
#: larger fleet's event carries counts and totals by field controller instead (the
#: lists of 100,000 units would pass the broker's message size cap).
EVENT_UNITS = 1000
#: Schedules kept at once (a market sends one per delivery day, at most a few days
#: ahead); a further one is refused rather than let the map grow.
MAX_SCHEDULES = 32


def _plain(agg: Aggregate) -> dict[str, Any]:
    """A group's totals for the ``fleet`` answer: a SOC with no unit reporting is NaN in
    the fleet's arrays, and None on the bus, which carries no NaN."""
    out = dataclasses.asdict(agg)
    if not math.isfinite(out["soc_pct"]):
        out["soc_pct"] = None
    return out


def _agc_fleet(fleet: Fleet, now: float, base_kw: float) -> tuple[FleetState, float]:
    """What the AGC handler needs of the units dispatch may use now (MW), and the power
    (kW) of every unit reporting."""
    n = fleet.size
    ok = fleet.eligibility(now) == ELIGIBLE
    charge, discharge = fleet.available()
    energy = float(fleet.energy[:n][ok].sum())
    stored = float((fleet.energy[:n] * fleet.soc[:n])[ok].sum()) / 100.0
    reporting = fleet.online(now) & (fleet.telemetry_time[:n] > -math.inf)
    state = FleetState(up_mw=float(discharge[ok].sum()) / 1000.0,
                       down_mw=float(charge[ok].sum()) / 1000.0,
                       soc_pct=100.0 * stored / energy if energy > 0 else math.nan,
                       energy_mwh=energy / 1000.0, schedule_mw=base_kw / 1000.0)  # fmt: skip
    return state, float(fleet.power[:n][reporting].sum())


@dataclasses.dataclass
class FieldPeer:
    """A field controller as the campus knows it."""

    id: str
    endpoint: str
    """Its command endpoint, from the topology (never from a heartbeat)."""
    last_seen: float
    online: bool = True
    failures: int = 0
    """Commands that timed out."""
    suspended_until: float = -math.inf
    """After a command timed out: no commands (nor shares) before this time."""


class Campus(Service):
    """The campus aggregator (see the module docstring); ``async with`` runs it."""

    topics = ("heartbeat/", "telemetry/")

    def __init__(
        self,
        site: SiteConfig,
        topo: Topology,
        name: str = "campus",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(topo, name)
        self.config = site.campus
        self.rating_kw = sum(u.rated_power_kw for f in site.field for u in f.units)
        """The site's rated power: no target or schedule may ask beyond it."""
        self.units = {u.id: u for u in site.units()}
        """The configured units: only these enter the fleet, with these ratings."""
        self.owner: dict[str, str] = {u.id: f.id for f in site.field for u in f.units}
        """Unit id -> the field controller that commands it (from the configuration)."""
        fleet_cfg = site.campus.fleet
        if fleet_cfg.initial_capacity > len(self.units):
            # Slots for the configured units only: the fleet never holds another.
            fleet_cfg = fleet_cfg.model_copy(update={"initial_capacity": len(self.units)})
        self.fleet = Fleet(fleet_cfg)
        self.roster = Roster(self.owner, max_future_s=fleet_cfg.max_future_s,
                             max_age_s=fleet_cfg.max_age_s, errors=self.errors,
                             where=name)  # fmt: skip
        self.dispatcher = Dispatcher(self.fleet, site.campus.dispatch)
        self.clock = clock
        self.fields: dict[str, FieldPeer] = {}
        """Field controllers heard from (configured ones only)."""
        self.target_kw: float | None = None
        self.strategy: Strategy | None = None
        self.schedules: dict[float, CampusSchedule] = {}
        """Schedules by start time (a market sends one per delivery day)."""
        self.rounds = 0
        self._wake = asyncio.Event()
        """Set by a new AGC set-point: the next round runs now, not at the next tick."""
        self.last: DispatchResult | None = None
        self.ingested = 0
        self.outbox = Outbox([f.id for f in site.field], len(self.units))
        """Per slot: the owner, and the setpoint it acknowledged in which round."""
        self.agc = AgcHandler(site.campus.agc)
        self.agc_performance = AgcPerformance(site.campus.agc)
        self.agc_report: dict[str, Any] | None = None
        """The last round's ``agc`` event (None before the first set-point)."""

    # ---- ingest ----

    def handlers(self) -> Mapping[str, Handler]:
        return {"set_target": self._set_target, "set_schedule": self._set_schedule,
                "fleet": self._fleet, "agc": self._agc}  # fmt: skip

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        return [self._dispatch_loop]

    async def on_message(self, batch: list[s.Message]) -> None:
        self.ingest(batch, self.clock())

    async def _receive(self) -> None:
        # Telemetry and heartbeats skip the model objects (campus.ingest); what that path
        # does not take goes through the models as before.
        while True:
            await self.ingest_queued()
            # A stream that never runs dry never suspends the receive: let the dispatch
            # loop and the command server run between batches.
            await asyncio.sleep(0)

    async def ingest_queued(self, sub: Subscriber | None = None, limit: int = ingest.BATCH) -> int:
        """Wait for a message on ``sub`` (default: the campus's subscriber), then validate
        and apply what is queued, up to ``limit`` messages; how many were taken.

        Received and decoded :data:`ingest.CHUNK <vpp.orchestrator.campus.ingest.CHUNK>`
        at a time (their frames still in the processor's cache), applied at once
        (:mod:`vpp.orchestrator.campus.ingest`).
        """
        sub = sub if sub is not None else self.subscriber
        assert sub is not None
        rows: list[ingest.Row] = []
        payloads: list[bytes] = []
        slow: list[s.Message] = []
        taken, wait = 0, True
        while taken < limit:
            got = await sub.recv_parts(min(ingest.CHUNK, limit - taken), wait=wait)
            n = len(got[0]) + len(got[2])
            if not n:
                break
            taken, wait = taken + n, False
            ingest.decode_into(*got, sub, rows, payloads, slow)
        now = self.clock()
        ingest.apply(self, rows, payloads, now)
        if slow:
            self.ingest(slow, now)
        return taken

    def ingest_frames(self, batch: list[list[bytes]], sub: Subscriber, now: float) -> None:
        """Validate and apply received frames (:mod:`vpp.orchestrator.campus.ingest`)."""
        rows, payloads, slow = ingest.decode(batch, sub)
        ingest.apply(self, rows, payloads, now)
        if slow:
            self.ingest(slow, now)

    def ingest(self, batch: list[s.Message], now: float) -> None:
        """Apply received messages to the fleet; those the roster refuses and bad ones are
        counted and skipped."""
        telemetry = self.fleet.telemetry
        admit = self.roster.admit
        received = self.roster.clock()
        for msg in batch:
            if not isinstance(msg, (s.TelemetryMsg, s.HeartbeatMsg)) or not admit(msg, received):
                continue
            try:
                if isinstance(msg, s.TelemetryMsg):
                    b = msg.body
                    lim = b.limits
                    # Telemetry from the owner is a sign of life as good as a heartbeat:
                    # it registers the unit too, so neither has to come first.
                    if b.unit not in self.fleet:
                        self.register(b.unit, now)
                    telemetry(b.unit, b.p_kw, b.soc_pct, -lim.p_min_kw, lim.p_max_kw,
                              b.safety, now)  # fmt: skip
                else:
                    self.heartbeat(msg.body.role, msg.body.id, now)
                self.ingested += 1
            except VppError as err:
                self.bad_input(msg.type, err)

    def register(self, uid: str, now: float) -> None:
        """Register a configured unit, with the configuration's location and ratings (what
        a heartbeat claims about them is not used), or note that it is alive."""
        fleet = self.fleet
        if uid in fleet:
            slot = fleet.slot(uid)
            fleet.last_seen[slot] = max(fleet.last_seen[slot], now)
            return
        cfg = self.units[uid]
        slot = fleet.heartbeat(uid, cfg.location.path(), rated_charge_kw=cfg.rated_power_kw,
                               rated_discharge_kw=cfg.rated_power_kw,
                               energy_kwh=cfg.capacity_kwh, timestamp=now)  # fmt: skip
        self.outbox.place(slot, uid, self.owner.get(uid))

    def heartbeat(self, role: str, hid: str, now: float) -> None:
        """A heartbeat the roster admitted: of a unit (``role`` unit) or a field
        controller (``field``); other roles are ignored."""
        if role == "unit":
            self.register(hid, now)
        elif role == "field":
            peer = self.fields.get(hid)
            if peer is None:
                # The endpoint is the topology's: a heartbeat's ``endpoint`` could point
                # the campus's commands anywhere.
                endpoint = self.topo.commands.get(hid, "")
                self.fields[hid] = FieldPeer(hid, endpoint, now)
                log.info("campus: field controller %s at %s", hid, endpoint or "(none)")
            else:
                peer.last_seen = now
                if not peer.online and now >= peer.suspended_until:
                    peer.online = True
                    log.info("campus: field controller %s is back", hid)

    # ---- commands ----

    async def _set_target(self, cmd: s.CommandMsg) -> dict[str, Any]:
        p = parse(SetTarget, cmd.body.params, self.name)
        if p.kw is not None:
            check_power(p.kw, self.rating_kw, "kw", self.name)
        self.target_kw, self.strategy = p.kw, p.strategy
        return {"target_kw": self.target_kw, "strategy": self.strategy}

    async def _set_schedule(self, cmd: s.CommandMsg) -> dict[str, Any]:
        p = parse(CampusSchedule, cmd.body.params, self.name)
        now = self.clock()
        end = check_schedule(p.start, p.block_s, p.kw, limits=self.config.commands,
                             rating_kw=self.rating_kw, now=now, where=self.name,
                             name="kw")  # fmt: skip
        # One per start: a new schedule for the same start replaces the old one; those
        # over are dropped.
        self.schedules = {t: x for t, x in self.schedules.items() if x.end > now}
        if p.start not in self.schedules and len(self.schedules) >= MAX_SCHEDULES:
            raise CommandError(f"{len(self.schedules)} schedules not over yet, at most "
                               f"{MAX_SCHEDULES}", field="start", where=self.name)  # fmt: skip
        self.schedules[p.start] = p
        return {"blocks": len(p.kw), "start": p.start, "end": end}

    async def _agc(self, cmd: s.CommandMsg) -> dict[str, Any]:
        p = parse(Agc, cmd.body.params, self.name)
        check_power(p.mw, self.rating_kw / 1000.0, "mw", self.name)
        self.agc.setpoint(self.clock(), p.mw)
        # The set-point starts moving the fleet in this round rather than up to a
        # dispatch interval later (half of the operator's 4 s cycle at the default 2 s).
        self._wake.set()
        last = self.agc.last
        # What is in force until the next round applies the new set-point.
        return {"setpoint_mw": p.mw, "offset_mw": self.agc.offset_mw,
                "status": last.status if last else "stale"}  # fmt: skip

    async def _fleet(self, cmd: s.CommandMsg) -> dict[str, Any]:
        now = self.clock()
        # A large fleet's node level is one entry per unit: ask for fewer levels then.
        want = params(CampusFleet, cmd).levels
        levels = {lvl: {path: _plain(a) for path, a in
                        self.fleet.aggregates(lvl, now).items()} for lvl in want}  # fmt: skip
        return {
            "units": len(self.fleet),
            "levels": levels,
            "fields": {
                f.id: {"online": f.online, "failures": f.failures} for f in self.fields.values()
            },
            "target_kw": self.target(now)[0],
            "target_source": self.target(now)[1],
            # The schedules not over yet (what the market sent, or an operator).
            "schedules": [{"start": x.start, "block_s": x.block_s, "kw": list(x.kw)}
                          for _, x in sorted(self.schedules.items()) if x.end > now],
            # What was refused and why (forged, unknown or stale input, refused commands).
            "errors": dict(self.errors),
            "agc": self.agc_report,
            "bus_errors": dict(self.subscriber.errors) if self.subscriber else {},
        }

    # ---- dispatch ----

    def target(self, now: float) -> tuple[float, str]:
        """The campus target now and where it came from."""
        if self.target_kw is not None:
            return self.target_kw, "set_target"
        # The latest-starting schedule that covers ``now``.
        for start in sorted(self.schedules, reverse=True):
            sch = self.schedules[start]
            i = math.floor((now - sch.start) / sch.block_s)
            if 0 <= i < len(sch.kw):
                return sch.kw[i], "schedule"
        if self.config.target_kw is not None:
            return self.config.target_kw, "config"
        return 0.0, "none"

    async def _dispatch_loop(self) -> None:
        interval = self.config.dispatch_interval_s
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       max(0.0, start + n * interval - loop.time()))  # fmt: skip
                n -= 1  # woken early: the regular tick still comes
            self._wake.clear()
            await self.dispatch_once()

    def _check_fields(self, now: float) -> list[str]:
        timeout = self.config.fleet.offline_timeout_s
        gone = []
        for f in self.fields.values():
            if f.online and now - f.last_seen > timeout:
                gone.append(f.id)
                self._field_offline(f, "no heartbeat")
            elif not f.online:
                # Its units' telemetry may still come; they take no share till it is back.
                self._mark_units(f.id)
        return gone

    def _field_offline(self, f: FieldPeer, why: str) -> None:
        f.online = False
        log.warning("campus: field controller %s offline (%s)", f.id, why)
        self._mark_units(f.id)

    def _mark_units(self, fid: str) -> None:
        slots = self.outbox.slots_of(fid)
        self.fleet.last_seen[slots] = -math.inf
        # Whatever it acknowledged may be lost when it comes back: send it all.
        self.outbox.forget(slots)

    async def dispatch_once(self) -> DispatchResult:
        """One round: split the target, send the setpoints, publish the event."""
        now = self.clock()
        for fid in self._check_fields(now):
            await self.publish_event("device", {"field": fid, "online": False},
                                     text=f"field controller {fid} offline: no heartbeat",
                                     severity="warning")  # fmt: skip
        base, source = self.target(now)
        agc_kw = self._agc_step(now, base) if self.agc.active else 0.0
        target = base + agc_kw
        result = self.dispatcher.dispatch(target, now, self.strategy)
        self.rounds += 1
        self.last = result
        sends, unreachable = self.outbox.plan(result, self.rounds)
        if unreachable:
            self.errors["no_owner"] += unreachable
        jobs = [self._send(fid, items) for fid, items in sends.items()]
        results = await asyncio.gather(*jobs)
        failed = [fid for fid, ok in zip(sends, results, strict=True) if not ok]
        await self.publish_event("dispatch", {
            "target_kw": target, "source": source, "base_kw": base, "agc_kw": agc_kw,
            "delivered_kw": result.delivered_kw,
            "shortfall_kw": result.shortfall_kw, "strategy": result.strategy,
            **self._unit_report(result), "failed": failed,
        })  # fmt: skip
        if self.agc_report is not None:
            await self.publish_event("agc", self.agc_report)
        return result

    def _agc_step(self, now: float, base_kw: float) -> float:
        """The AGC offset (kW) on ``base_kw`` this round; records the response measured
        (the fleet's power beyond the base, primary frequency response included) and
        keeps the round's report for the ``agc`` event."""
        fleet, power = _agc_fleet(self.fleet, now, base_kw)
        step = self.agc.step(now, fleet)
        perf = self.agc_performance
        delivered = (power - base_kw) / 1000.0
        perf.record(now, step.requested_mw, delivered)
        period_s = self.agc.config.period_s
        period = perf.period_report(math.floor(now / period_s) * period_s, now)
        # The event goes out every round: its signals are counted, not listed.
        sigs = period.pop("signals")
        period["signals"] = {"count": len(sigs),
                             "failed": sum(not g["passed"] for g in sigs)}  # fmt: skip
        cur = perf.current
        self.agc_report = {
            "setpoint_mw": step.setpoint_mw, "requested_mw": step.requested_mw,
            "offset_mw": step.offset_mw, "status": step.status, "low_mw": step.low_mw,
            "high_mw": step.high_mw, "delivered_mw": delivered,
            # The obligation held, for the settlement's availability payment.
            "reserved_up_mw": self.agc.config.reserved_up_mw,
            "reserved_down_mw": self.agc.config.reserved_down_mw,
            "signal": perf.signal_report(cur, now) if cur is not None else None,
            "period": period,
        }  # fmt: skip
        return step.offset_mw * 1000.0

    def _unit_report(self, result: DispatchResult) -> dict[str, Any]:
        """The dispatch event's per-unit part: the setpoints and exclusions by unit up to
        :data:`EVENT_UNITS` units; beyond, counts and totals by field controller."""
        if len(self.fleet) <= EVENT_UNITS:
            return {"setpoints": result.setpoints, "excluded": result.excluded}
        owner = self.outbox.owner[result.slots]
        fields = self.outbox.fields
        ok = owner >= 0
        kw = np.bincount(owner[ok], weights=result.setpoints_kw[ok], minlength=len(fields))
        units = np.bincount(owner[ok], minlength=len(fields))
        return {
            "units": len(result.slots),
            "by_field": {fields[k]: {"units": int(units[k]), "kw": float(kw[k])}
                         for k in np.flatnonzero(units).tolist()},
            "excluded_counts": {REASONS[c]: int(x) for c, x in
                                enumerate(np.bincount(result.excluded_codes,
                                                      minlength=len(REASONS)).tolist()) if x},
        }  # fmt: skip

    async def _send(self, fid: str, sends: FieldSends) -> bool:
        peer = self.fields.get(fid)
        if peer is None or fid not in self.topo.commands:
            # Never heard from, or (a bug) not in the topology: no socket for it.
            self.errors["no_endpoint"] += len(sends)
            return False
        if not peer.online:
            return False
        timeout = min(self.bus.command_timeout_s, self.config.dispatch_interval_s / 2)
        outbox = self.outbox
        for slot, unit, kw in zip(sends.slots.tolist(), sends.units, sends.kw.tolist(),
                                  strict=True):  # fmt: skip
            args = {"unit": unit, "kw": kw}
            # The topology's endpoint for ``fid`` (Service.client), nothing a peer said.
            ack = await self.command(fid, "set_base", args, timeout=timeout, retries=0)
            if ack is None:
                peer.failures += 1
                # Heartbeats alone do not bring it back before this: it publishes but
                # does not answer, and would otherwise win its share back every round.
                peer.suspended_until = self.clock() + self.config.fleet.offline_timeout_s
                self._field_offline(peer, "command timed out")
                await self.drop_client(fid)
                await self.publish_event("device", {"field": fid, "online": False},
                                         text=f"field controller {fid}: set_base timed out",
                                         severity="warning")  # fmt: skip
                return False
            if ack.ok:
                outbox.acked_kw[slot] = kw
                outbox.acked_round[slot] = self.rounds
        return True


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Run the campus aggregator ``name`` until ``stop`` is set (in its own process:
    it tunes the process's garbage collector for ingest, see :func:`tune_gc`)."""
    tune_gc()
    await Campus(site, topo, name).run(stop)
