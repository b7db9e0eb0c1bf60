"""The market gateway process: today's remaining Day-Ahead blocks optimised, bid on the
exchange, and the accepted volumes sent to the campus as its schedule.

The gateway depends on an :class:`~vpp.orchestrator.market.exchange.Exchange` and a
:class:`~vpp.orchestrator.market.exchange.PriceForecast` only; :func:`serve` takes them
from :func:`~vpp.orchestrator.market.exchanges.from_config` (``market.exchange``: the
simulated exchange, or the file exchange a trader works by hand).

A run (at start, after ``settle_s`` for telemetry to arrive, and on the ``run`` command):

1. The fleet aggregate: power and energy are the sums of the units' ``rated_power_kw``
   and ``capacity_kwh`` in ``site.field``; ``market.reserve_fraction`` of the power is
   held back both ways for frequency response, with the energy to sustain it for
   ``RESERVE_H`` (15 minutes); SOC may use 10-90 % of the energy. On top, the secondary
   reserve accepted (``campus.agc.reserved_up_mw`` / ``reserved_down_mw``) is held back,
   with the energy to sustain it for ``campus.agc.sustain_s`` inside the AGC's SOC band
   (:class:`~vpp.orchestrator.market.BatteryParams`). The initial SOC is the
   energy-weighted SOC of the units' latest telemetry (50 % before any came).
2. Blocks: the current IST day from the block after the one under way (that one and
   those already past are left at 0 kW: not bid). When no block is left, the next day.
   With ``market.from_current_block`` (the simulated site) the block under way is
   included, as if yesterday's auction had cleared it, so a short run has a schedule.
   After that the real DAM cycle: when tomorrow's bid window (10:00-12:00 IST) is open
   and tomorrow has no schedule, tomorrow's 96 blocks are run the same way. With
   ``market.rtm``, each RTM session whose window is open is re-traded: its 2 blocks
   re-optimised at RTM prices, the difference from the DAM position bid, and the
   accepted volumes added to the day's schedule (:meth:`MarketGateway.run_rtm`).
3. Forecast prices from the price forecast; :func:`~vpp.orchestrator.market.optimise`,
   rounded to the exchange's volume grid, one price-taker bid per block with a non-zero
   net, submitted to the exchange (an EventMsg kind ``bid`` per bid).
4. When the auction has cleared (at once on the simulated exchange; when the trader's
   result file came on the file exchange, asked every ``exchange.poll_s``): an EventMsg
   kind ``result`` per award, and the accepted volumes become the base schedule
   (:func:`~vpp.orchestrator.market.base_schedule`, kW per block, + = sell = discharge),
   sent as ``set_schedule`` {start, block_s, kw} to the campus. Input the exchange
   refused (a malformed result file) is counted under ``errors["exchange"]`` and
   published as a ``market_error`` event; the gateway goes on.

Every schedule not yet over is sent again every ``resend_s``, so a campus that restarted
(and lost them) gets them back; a send that times out is counted and left to the next one.
Commands: ``status``, ``run``, and the read-only ``bids`` and ``results``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from vpp.config.models import SiteConfig
from vpp.errors import VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Handler
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.market import (
    BLOCK_S,
    BLOCKS_PER_DAY,
    BaseSchedule,
    BatteryParams,
    Bid,
    Product,
    Schedule,
    ScheduleError,
    base_schedule,
    block_of,
    check_window,
    is_window_open,
    open_rtm_session,
    optimise,
    round_schedule,
    session_blocks,
    to_bids,
)
from vpp.orchestrator.market.exchange import Auction, Clearing, Exchange, PriceForecast
from vpp.orchestrator.market.exchanges import from_config
from vpp.orchestrator.service import Service

__all__ = ["RESERVE_H", "MarketGateway", "serve"]

log = logging.getLogger(__name__)

#: Hours the frequency-response reserve must be sustainable from the SOC limits.
RESERVE_H = 0.25
SOC_MIN, SOC_MAX = 0.10, 0.90


def _bid_data(bid: Bid) -> dict[str, Any]:
    return {"bid_id": bid.bid_id, "product": bid.product.value,
            "delivery": bid.delivery.isoformat(), "block": bid.block, "side": bid.side.value,
            "steps": [{"price_rs_mwh": st.price_rs_mwh, "volume_mw": st.volume_mw}
                      for st in bid.steps]}  # fmt: skip


class MarketGateway(Service):
    """The market gateway (see the module docstring); ``async with`` runs it."""

    topics = ("telemetry/",)

    def __init__(
        self,
        site: SiteConfig,
        topo: Topology,
        name: str = "market",
        *,
        exchange: Exchange,
        forecast: PriceForecast,
        settle_s: float = 2.0,
        resend_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(topo, name)
        self.config = site.market
        self.agc = site.campus.agc
        self.exchange = exchange
        self.prices = forecast
        self.settle_s = settle_s
        self.resend_s = resend_s
        self.clock = clock
        units = site.units()
        self.capacity_kwh = {u.id: u.capacity_kwh for u in units}
        self.power_mw = sum(u.rated_power_kw for u in units) / 1000.0
        self.energy_mwh = sum(u.capacity_kwh for u in units) / 1000.0
        self.soc: dict[str, float] = {}
        self.runs = 0
        self.bids: list[Bid] = []
        self.clearing: Clearing | None = None
        """The last DAM clearing."""
        self.schedule: BaseSchedule | None = None
        """The schedule of the last DAM clearing."""
        self.schedules: dict[date, BaseSchedule] = {}
        """Every delivery day's accepted schedule not yet over (sent to the campus)."""
        self.pending: dict[Auction, list[Bid]] = {}
        """Auctions bid and not yet cleared, with their bids."""
        self.delivered = False
        """Whether the campus acknowledged the current schedule."""
        self._run_lock = asyncio.Lock()
        self.rtm_done: set[tuple[date, int]] = set()
        """RTM sessions already bid (delivery day, session)."""
        self.rtm_runs = 0
        self.rtm_bids: list[Bid] = []
        """The bids of the last RTM session."""
        self._rtm_traded: dict[Auction, tuple[float, ...]] = {}
        self._dam_kw: dict[date, tuple[float, ...]] = {}
        self._rtm_kw: dict[date, tuple[float, ...]] = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {"status": self._status, "run": self._run, "bids": self._bids,
                "results": self._results}  # fmt: skip

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        loops: list[Callable[[], Awaitable[None]]] = [self._main]
        if self.exchange.poll_s > 0:
            loops.append(self._poll)
        return loops

    async def on_message(self, batch: list[s.Message]) -> None:
        for msg in batch:
            if isinstance(msg, s.TelemetryMsg) and msg.body.unit in self.capacity_kwh:
                self.soc[msg.body.unit] = msg.body.soc_pct

    # ---- the run ----

    def battery(self) -> BatteryParams:
        """The fleet aggregate as the optimiser sees it (see the module docstring).

        Raises :class:`ScheduleError` when the reserves do not fit the fleet."""
        e = self.energy_mwh
        known = {u: kwh for u, kwh in self.capacity_kwh.items() if u in self.soc}
        if known:
            soc = sum(self.soc[u] * kwh for u, kwh in known.items()) / sum(known.values()) / 100
        else:
            soc = 0.5
        soc = min(SOC_MAX, max(SOC_MIN, soc))
        agc = self.agc
        try:
            return BatteryParams(
                p_charge_max_mw=self.power_mw, p_discharge_max_mw=self.power_mw,
                soc_min_mwh=SOC_MIN * e, soc_max_mwh=SOC_MAX * e, soc_initial_mwh=soc * e,
                degradation_rs_mwh=self.config.degradation_rs_per_mwh,
                reserve_mw=self.config.reserve_fraction * self.power_mw,
                reserve_duration_h=RESERVE_H,
                reserve_up_mw=agc.reserved_up_mw, reserve_down_mw=agc.reserved_down_mw,
                reserve_sustain_h=agc.sustain_s / 3600.0,
                # The AGC handler only uses the energy inside its band (docs/agc.md).
                reserve_floor_mwh=agc.soc_min_pct / 100.0 * e if agc.reserved_up_mw else None,
                reserve_ceiling_mwh=agc.soc_max_pct / 100.0 * e if agc.reserved_down_mw else None,
            )  # fmt: skip
        except ValidationError as exc:
            why = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ScheduleError(
                f"{why} (fleet {self.power_mw:g} MW / {e:g} MWh; market.reserve_fraction "
                f"{self.config.reserve_fraction:g}, campus.agc.reserved_up_mw "
                f"{agc.reserved_up_mw:g}, reserved_down_mw {agc.reserved_down_mw:g})",
                field="battery",
            ) from None

    def blocks(self, now: float) -> tuple[date, int]:
        """The delivery day and its first block to bid (see the module docstring)."""
        day, block = block_of(now)
        if self.config.from_current_block:
            return day, block
        if block + 1 < BLOCKS_PER_DAY:
            return day, block + 1
        return day + timedelta(days=1), 0

    def forecast(self, day: date, first: int, rtm: bool = False) -> list[float]:
        """Forecast prices (Rs/MWh) of blocks ``first``..95 of ``day`` (``rtm``: the
        real-time market's)."""
        prices = self.prices.forecast(Product.RTM if rtm else Product.DAM, day)
        if len(prices) != BLOCKS_PER_DAY:
            raise ScheduleError(f"the forecast has {len(prices)} prices, not one per block",
                                field="prices")  # fmt: skip
        return prices[first:]

    async def run_next_day(self) -> dict[str, Any]:
        """The real DAM cycle: tomorrow's 96 blocks, inside the bid window (10:00-12:00
        IST the day before; BidWindowError outside it)."""
        now = self.clock()
        day = block_of(now)[0] + timedelta(days=1)
        check_window(Product.DAM, day, now)
        return await self.run_once(day, 0)

    async def run_rtm(self, day: date, session: int) -> dict[str, Any]:
        """Re-optimise the fleet's position for an RTM session's 2 blocks at RTM forecast
        prices and bid the difference from the DAM schedule; once cleared, the accepted
        volumes are added to that day's schedule, which is sent again. ``traded_kw`` is
        None while the auction has not cleared."""
        auction = Auction(Product.RTM, day, session)
        async with self._run_lock:
            self.rtm_done.add((day, session))
            first, _ = session_blocks(session)
            battery = self.battery()
            lim = self.config.limits
            prices = self.forecast(day, first, rtm=True)[:2]
            plan = await self._rounded(optimise(prices, battery, first_block=first), battery, "RTM")
            dam = self.schedules.get(day)
            held = [dam.kw[first + i] / 1000.0 if dam else 0.0 for i in range(2)]
            # The RTM trade is the new position minus what the DAM already holds (both on
            # the 0.1 MW grid, so the difference is too, up to float rounding).
            step = lim.volume_step_mw
            trade = tuple(round((plan.net_mw[i] - held[i]) / step) * step for i in range(2))
            delta = dataclasses.replace(plan, net_mw=trade)
            bids = to_bids(delta, day, product=Product.RTM, limits=lim)
            self.rtm_bids = bids
            await self._submit(auction, bids)
            self.rtm_runs += 1
        await self.collect()
        traded = self._rtm_traded.pop(auction, None)
        return {"session": session, "bids": len(bids),
                "traded_kw": None if traded is None else list(traded[first : first + 2])}

    def next_day_due(self) -> bool:
        """Whether tomorrow's DAM window is open and tomorrow has no schedule yet (nor
        bids awaiting their results)."""
        now = self.clock()
        day = block_of(now)[0] + timedelta(days=1)
        return (day not in self.schedules and Auction(Product.DAM, day) not in self.pending
                and is_window_open(Product.DAM, day, now))  # fmt: skip

    async def run_once(self, day: date | None = None, first: int | None = None) -> dict[str, Any]:
        """Optimise and bid ``day`` from block ``first`` (default: :meth:`blocks`); once
        cleared (at once on an exchange that clears at submission), publish the results and
        send the schedule. A summary."""
        async with self._run_lock:
            if day is None or first is None:
                day, first = self.blocks(self.clock())
            battery = self.battery()
            lim = self.config.limits
            raw = optimise(self.forecast(day, first), battery, first_block=first)
            plan = await self._rounded(raw, battery, "DAM")
            bids = to_bids(plan, day, limits=lim)
            await self._submit(Auction(Product.DAM, day), bids)
            self.runs += 1
            self.bids = bids
        await self.collect()
        return self.summary()

    async def _rounded(self, raw: Schedule, battery: BatteryParams, product: str) -> Schedule:
        """``raw`` on the volume grid; what the grid forced it to give up (its ``relaxed``
        constraints) goes out as a warning event, not only into the log."""
        plan = round_schedule(raw, battery, self.config.limits)
        if plan.relaxed:
            await self.publish_event(
                "market", {"product": product, "relaxed": list(plan.relaxed)},
                text=f"{product} schedule rounded with relaxed constraints: "
                + "; ".join(plan.relaxed),
                severity="warning",
            )  # fmt: skip
        return plan

    async def _submit(self, auction: Auction, bids: list[Bid]) -> None:
        """Submit ``bids`` to the exchange and publish each as an event. With no bid there
        is nothing to clear: the auction is done, with no awards."""
        if bids:
            await self.exchange.submit(auction, bids)
        for bid in bids:
            await self.publish_event("bid", _bid_data(bid))
        self.pending[auction] = bids

    async def collect(self) -> bool:
        """Ask the exchange for every pending auction's results; apply those cleared
        (publish the awards, update the schedules) and send the schedules when any was.
        Whether one was."""
        async with self._run_lock:
            done: list[Clearing] = []
            for auction, bids in list(self.pending.items()):
                res = await self.exchange.results(auction) if bids else Clearing(auction, {}, {})
                if res is not None:
                    del self.pending[auction]
                    done.append(res)
            for res in done:
                await self._apply(res)
        await self._report_exchange_errors()
        if done:
            await self.send_schedule()
        return bool(done)

    async def _apply(self, res: Clearing) -> None:
        for aw in res.awards.values():
            await self.publish_event("result", {
                "bid_id": aw.bid_id, "block": aw.block, "side": aw.side.value,
                "accepted_mw": aw.accepted_mw, "clearing_price": aw.price_rs_mwh,
            })  # fmt: skip
        auction = res.auction
        day = auction.delivery
        traded = base_schedule(res.awards.values(), day)
        # A day's schedule is its DAM position plus its RTM trades, whichever order they
        # clear in (a trader may bring an RTM result before the DAM's); a DAM re-run
        # replaces the DAM part only: the RTM trades are positions taken.
        if auction.product is Product.DAM:
            self.clearing, self.schedule = res, traded
            self._dam_kw[day] = traded.kw
            self.delivered = False
        else:
            rtm = self._rtm_kw.get(day, (0.0,) * BLOCKS_PER_DAY)
            self._rtm_kw[day] = tuple(a + b for a, b in zip(rtm, traded.kw, strict=True))
            self._rtm_traded[auction] = traded.kw
        parts = [k for k in (self._dam_kw.get(day), self._rtm_kw.get(day)) if k is not None]
        self.schedules[day] = BaseSchedule(traded.start, tuple(map(sum, zip(*parts, strict=True))))

    async def _report_exchange_errors(self) -> None:
        for err in self.exchange.take_errors():
            self.bad_input("exchange", err)
            await self.publish_event("market_error", {"error": str(err)}, severity="warning",
                                     text=f"exchange input refused: {err}")  # fmt: skip

    async def send_schedule(self) -> bool:
        """Send every schedule not yet over to the campus (each delivery day is its own
        schedule there); whether all were acknowledged."""
        now = self.clock()
        for day in [d for d, sch in self.schedules.items() if sch.end <= now]:
            del self.schedules[day]
            self._dam_kw.pop(day, None)
            self._rtm_kw.pop(day, None)
        if not self.schedules:
            return False
        ok = True
        for sch in self.schedules.values():
            args = {"start": sch.start, "block_s": float(BLOCK_S), "kw": list(sch.kw)}
            ack = await self.command("campus", "set_schedule", args)
            ok = ok and ack is not None and ack.ok
        self.delivered = ok
        return ok

    def summary(self) -> dict[str, Any]:
        """What the last run bid and got."""
        sch, res = self.schedule, self.clearing
        awards = list(res.awards.values()) if res else []
        return {
            "runs": self.runs,
            "delivery": res.auction.delivery.isoformat() if res else None,
            "bids": len(self.bids),
            "accepted_mwh": sum(a.accepted_mw for a in awards) * BLOCK_S / 3600.0,
            "schedule_start": sch.start if sch else None,
            "schedule_kw": list(sch.kw) if sch else [],
            "delivered": self.delivered,
            "pending": [str(a) for a in self.pending],
            "fleet": {
                "power_mw": self.power_mw,
                "energy_mwh": self.energy_mwh,
                "reserve_mw": self.config.reserve_fraction * self.power_mw,
                "reserved_up_mw": self.agc.reserved_up_mw,
                "reserved_down_mw": self.agc.reserved_down_mw,
            },
            "errors": dict(self.errors),
        }

    async def _try_rtm(self, day: date, session: int) -> None:
        try:
            await self.run_rtm(day, session)
        except VppError as err:
            self.bad_input("rtm", err)
            await self.publish_event("market_error", {"error": str(err)}, severity="warning",
                                     text=f"RTM session {session} failed: {err}")  # fmt: skip

    async def _try_run(self, next_day: bool = False) -> None:
        try:
            await (self.run_next_day() if next_day else self.run_once())
        except VppError as err:
            # An infeasible schedule, a refused bid, no forecast: reported, the gateway
            # goes on.
            self.bad_input("run", err)
            await self.publish_event("market_error", {"error": str(err)}, severity="warning",
                                     text=f"market run failed: {err}")  # fmt: skip

    async def _main(self) -> None:
        await asyncio.sleep(self.settle_s)
        await self._try_run()
        while True:
            await asyncio.sleep(self.resend_s)
            if self.next_day_due():
                await self._try_run(next_day=True)
            rtm = open_rtm_session(self.clock()) if self.config.rtm else None
            if rtm is not None and rtm not in self.rtm_done:
                await self._try_rtm(*rtm)
            await self.send_schedule()

    async def _poll(self) -> None:
        """Ask a slow exchange for results every ``poll_s`` (the file exchange's inbox)."""
        while True:
            await asyncio.sleep(self.exchange.poll_s)
            try:
                await self.collect()
            except (VppError, OSError) as err:
                # A folder that went away, a refused award: reported, asked again later.
                self.bad_input("exchange", err)
                await self.publish_event("market_error", {"error": str(err)},
                                         severity="warning",
                                         text=f"exchange results failed: {err}")  # fmt: skip

    # ---- commands ----

    async def _status(self, cmd: s.CommandMsg) -> dict[str, Any]:
        return self.summary()

    async def _run(self, cmd: s.CommandMsg) -> dict[str, Any]:
        return await self.run_once()

    async def _bids(self, cmd: s.CommandMsg) -> dict[str, Any]:
        return {"dam": [_bid_data(b) for b in self.bids],
                "rtm": [_bid_data(b) for b in self.rtm_bids]}  # fmt: skip

    async def _results(self, cmd: s.CommandMsg) -> dict[str, Any]:
        res = self.clearing
        if res is None:
            return {"awards": [], "blocks": []}
        awards = [{"bid_id": a.bid_id, "product": a.product.value,
                   "delivery": a.delivery.isoformat(), "block": a.block, "side": a.side.value,
                   "accepted_mw": a.accepted_mw, "clearing_price": a.price_rs_mwh}
                  for a in res.awards.values()]  # fmt: skip
        blocks = [{"block": b, "price_rs_mwh": p} for b, p in sorted(res.prices.items())]
        return {"awards": awards, "blocks": blocks}


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Run the market gateway ``name`` on the exchange ``market.exchange`` names until
    ``stop`` is set."""
    exchange, forecast = from_config(site.market)
    await MarketGateway(site, topo, name, exchange=exchange, forecast=forecast).run(stop)
