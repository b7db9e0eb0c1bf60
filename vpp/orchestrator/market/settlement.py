"""The settlement ledger: per 15-minute block, what was scheduled, what was delivered, the
deviation charge under the Deviation Settlement Mechanism (DSM), what the market paid,
and what secondary reserve earned.

Pure: :func:`settle_day` asks a :class:`LedgerSource` (the history, read-only) for rows
and computes; it writes nothing and reads no clock. The rules and rates are a
:class:`~vpp.orchestrator.market.dsm.DsmConfig`.

Per block of the IST day (96 blocks of :data:`~vpp.orchestrator.market.BLOCK_S`):

- **market MWh**: the integral over the block of the schedule the campus accepted
  (``set_schedule`` commands with ``ok = 1``: kW per step from ``start``, ``block_s``
  apart). Per target, the last accepted schedule recorded before the block ends that
  covers the block counts (the gateway resends its schedules and re-trades RTM sessions;
  the latest one is what the fleet followed); the targets' schedules add up.
- **instructed MWh**: the integral of the AGC regulation offset in force (the campus's
  ``agc`` events, ``offset_mw``, each held until the next for at most ``hold_s``). An
  instruction of the load despatch centre is a revision of the schedule, so following it
  is no deviation. **scheduled** = market + instructed.
- **actual MWh**: the integral of the measured power over the block: of the series
  :attr:`DsmConfig.meter` when set (the meter at the connection point), else of each
  unit's telemetry ``power_kw``, summed. Piecewise-constant (each sample held until the
  next one, for at most :attr:`DsmConfig.hold_s`) rather than trapezoid: the field
  changes its setpoints in steps, which a trapezoid would smear into ramps that never
  happened; a sample before the block carries into it without interpolating across the
  block's edge; and a gap (a unit that stopped reporting) is a gap, counted in
  ``coverage_pct``, not a line drawn across it.
- **deviation** = actual - scheduled (MWh; + = over-injection), and in % of the
  percent base: ``max(|scheduled|, min_base_mw * 0.25 h)``; None when that base is 0.
- **normal rate** (Rs/MWh): the highest of the block's clearing prices of the products
  in :attr:`DsmConfig.rate_products` (the 2024 regulation takes the highest of the DAM
  and RTM prices and the ancillary service charge; the last is not in the history),
  capped at :attr:`DsmConfig.rate_cap_rs_mwh`. A block without such a price takes the
  mean of the day's blocks that have one, and without any the fallback rate.
- **DSM charge** (Rs; **+ = payable by the plant**, - = receivable): the deviation beyond
  the tolerance band is cut into the bands of the table (edges in % of the base), each
  part at its multiplier times the normal rate, like tax brackets
  (:func:`~vpp.orchestrator.market.dsm.band_charge`).
- **market revenue** (Rs; + = received): accepted MW x clearing price x 0.25 h of each
  award for the block, sells +, buys -.
- **reserve** (Rs): availability (the reserve held, ``reserved_up_mw`` and
  ``reserved_down_mw`` of the ``agc`` events, MW x h, at the capacity rates) + energy
  (the regulation up and down, the offset's positive and negative parts, MWh, at the
  energy rates) of :class:`~vpp.orchestrator.market.dsm.ReserveTariff`.
- **net** = market revenue + reserve - DSM charge.

Only the blocks that an accepted schedule covers or an ``agc`` event falls in are in the
ledger.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any, Protocol

from vpp.errors import HistoryError
from vpp.orchestrator.market.dsm import Band, DsmConfig, ReserveTariff, band_charge
from vpp.orchestrator.market.products import BLOCK_H, BLOCK_S, BLOCKS_PER_DAY, IST, day_start

__all__ = [
    "LEDGER_COLUMNS",
    "Band",
    "Block",
    "DsmConfig",
    "LedgerSource",
    "ReserveTariff",
    "Totals",
    "band_charge",
    "energy_mwh",
    "held_integral",
    "settle_day",
    "totals",
]

#: Columns of the ledger (the CSV's, in order).
LEDGER_COLUMNS = (
    "block", "start", "start_ist", "market_mwh", "instructed_mwh", "scheduled_mwh",
    "actual_mwh", "deviation_mwh", "deviation_pct", "normal_rate_rs_mwh", "rate_source",
    "dsm_charge_rs", "market_revenue_rs", "reserved_up_mw", "reserved_down_mw",
    "regulation_up_mwh", "regulation_down_mwh", "reserve_availability_rs",
    "reserve_energy_rs", "reserve_rs", "net_rs", "coverage_pct",
)  # fmt: skip


@dataclass(frozen=True)
class Block:
    """One row of the ledger (see the module docstring for each figure and its sign).

    ``reserved_*_mw`` are the block's means; ``regulation_*_mwh`` magnitudes (up: the
    offset's discharge, down: its charge), so ``instructed = up - down``."""

    block: int
    start: float
    start_ist: str
    market_mwh: float
    instructed_mwh: float
    scheduled_mwh: float
    actual_mwh: float
    deviation_mwh: float
    deviation_pct: float | None
    normal_rate_rs_mwh: float
    rate_source: str
    dsm_charge_rs: float
    market_revenue_rs: float
    reserved_up_mw: float
    reserved_down_mw: float
    regulation_up_mwh: float
    regulation_down_mwh: float
    reserve_availability_rs: float
    reserve_energy_rs: float
    reserve_rs: float
    net_rs: float
    coverage_pct: float

    def row(self) -> dict[str, Any]:
        """The row as a dict of :data:`LEDGER_COLUMNS`."""
        return asdict(self)


assert tuple(f.name for f in fields(Block)) == LEDGER_COLUMNS


@dataclass(frozen=True)
class Totals:
    """The day's sums (Rs and MWh, signs as in :class:`Block`)."""

    blocks: int
    scheduled_mwh: float
    actual_mwh: float
    deviation_mwh: float
    dsm_charge_rs: float
    market_revenue_rs: float
    reserve_rs: float
    net_rs: float


class LedgerSource(Protocol):
    """What the ledger reads (:class:`vpp.reports.query.HistoryReader` is one)."""

    path: str

    def telemetry(self, start: float, end: float, unit: str | None = None) -> list[dict[str, Any]]:
        """Telemetry rows (t, unit, power_kw, ...) with start <= t <= end."""
        ...

    def commands(
        self, start: float | None = None, end: float | None = None
    ) -> list[dict[str, Any]]:
        """Audited command rows (t, command, target, params, ok, ...) in recorded order."""
        ...

    def awards(self, delivery: str) -> list[dict[str, Any]]:
        """The exchange's results for the IST day ``delivery`` (product, block, side,
        accepted_mw, clearing_price)."""
        ...

    def agc(self, start: float, end: float) -> list[dict[str, Any]]:
        """The campus's ``agc`` events (t, offset_mw, reserved_up_mw, reserved_down_mw;
        None where missing) with start <= t <= end, in time order."""
        ...


# ---- the pieces ----

#: Samples of one series: (t, value or None) in time order.
_Samples = Sequence[tuple[float, float | None]]


def held_integral(samples: _Samples, start: float, end: float, hold_s: float,
                  fn: Callable[[float], float] = float) -> tuple[float, float]:  # fmt: skip
    """The integral of ``fn(value)`` over ``start``..``end`` (value x hours) and the
    seconds covered: each sample held until the next, for at most ``hold_s``; a sample
    without a value holds nothing."""
    total = covered = 0.0
    for i, (t, v) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else math.inf
        a, b = max(t, start), min(nxt, t + hold_s, end)
        if v is None or b <= a:
            continue
        total += fn(v) * (b - a) / 3600.0
        covered += b - a
    return total, covered


def energy_mwh(samples: _Samples, start: float, end: float,
               hold_s: float) -> tuple[float, float]:  # fmt: skip
    """One series' energy (MWh) from ``start`` to ``end`` and the seconds covered, from
    its samples (t, kW) in time order (:func:`held_integral`)."""
    kwh, covered = held_integral(samples, start, end, hold_s)
    return kwh / 1000.0, covered


def _series(rows: Iterable[Mapping[str, Any]], key: str, by: str | None = None
            ) -> dict[str, list[tuple[float, float | None]]]:  # fmt: skip
    """``key`` of ``rows`` as samples per ``by`` (one series when None)."""
    out: dict[str, list[tuple[float, float | None]]] = {}
    for r in rows:
        v = r.get(key)
        out.setdefault(str(r[by]) if by else "", []).append(
            (float(r["t"]), None if v is None else float(v))
        )
    return out


#: An accepted schedule: (recorded t, target, start, step s, kW per step).
_Sched = tuple[float, str, float, float, list[float]]


def _schedules(rows: Iterable[Mapping[str, Any]]) -> list[_Sched]:
    """Accepted ``set_schedule`` commands as (t, target, start, step_s, kW per step)."""
    out = []
    for r in rows:
        if r.get("command") != "set_schedule" or r.get("ok") != 1:
            continue
        try:
            p = json.loads(r["params"]) if isinstance(r["params"], str) else r["params"]
            start, step = float(p["start"]), float(p.get("block_s", BLOCK_S))
            kw = [float(x) for x in p["kw"]]
        except (KeyError, TypeError, ValueError):
            continue  # not one the campus could have accepted either
        if step > 0 and kw and all(map(math.isfinite, [start, step, *kw])):
            out.append((float(r["t"]), str(r.get("target")), start, step, kw))
    return out


def _scheduled_mwh(schedules: Sequence[_Sched],
                   start: float, end: float) -> float | None:  # fmt: skip
    """The scheduled energy of [start, end) (None: no schedule covers it)."""
    latest: dict[str, tuple[float, float, list[float]]] = {}
    for t, target, s0, step, kw in schedules:
        if t < end and s0 <= start and s0 + step * len(kw) >= end:
            latest[target] = (s0, step, kw)  # recorded order: the last one wins
    if not latest:
        return None
    kwh = 0.0
    for s0, step, kw in latest.values():
        for i, p in enumerate(kw):
            a, b = max(start, s0 + i * step), min(end, s0 + (i + 1) * step)
            if b > a:
                kwh += p * (b - a) / 3600.0
    return kwh / 1000.0


def _latest_awards(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # A bid id cleared again (the gateway re-run) replaces its earlier result.
    latest: dict[Any, Mapping[str, Any]] = {}
    for r in sorted(rows, key=lambda r: float(r["t"])):
        latest[r.get("bid_id")] = r
    return list(latest.values())


def _rates(awards: Sequence[Mapping[str, Any]], config: DsmConfig) -> dict[int, tuple[float, str]]:
    """Per block: the normal rate and which product set it (before the cap)."""
    best: dict[int, tuple[float, str]] = {}
    for a in awards:
        price, block = a.get("clearing_price"), a.get("block")
        if a.get("product") not in config.rate_products or price is None or block is None:
            continue
        if int(block) not in best or float(price) > best[int(block)][0]:
            best[int(block)] = (float(price), str(a["product"]))
    return best


def _revenue(awards: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for a in awards:
        mw, price, block = a.get("accepted_mw"), a.get("clearing_price"), a.get("block")
        if mw is None or price is None or block is None:
            continue
        sign = 1.0 if a.get("side") == "sell" else -1.0
        out[int(block)] = out.get(int(block), 0.0) + sign * float(mw) * float(price) * BLOCK_H
    return out


# ---- the day ----


@dataclass(frozen=True)
class _Agc:
    """The block's AGC figures: instructed up and down MWh, reserved MW x h up and down."""

    up_mwh: float = 0.0
    down_mwh: float = 0.0
    up_mw_h: float = 0.0
    down_mw_h: float = 0.0

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]], start: float, end: float,
           hold_s: float) -> _Agc:  # fmt: skip
        off = _series(rows, "offset_mw").get("", [])
        up = _series(rows, "reserved_up_mw").get("", [])
        down = _series(rows, "reserved_down_mw").get("", [])
        return cls(held_integral(off, start, end, hold_s, lambda v: max(v, 0.0))[0],
                   held_integral(off, start, end, hold_s, lambda v: max(-v, 0.0))[0],
                   held_integral(up, start, end, hold_s)[0],
                   held_integral(down, start, end, hold_s)[0])  # fmt: skip

    def payments(self, tariff: ReserveTariff) -> tuple[float, float]:
        """(availability, energy) Rs."""
        return (self.up_mw_h * tariff.capacity_up_rs_mw_h
                + self.down_mw_h * tariff.capacity_down_rs_mw_h,
                self.up_mwh * tariff.energy_up_rs_mwh
                + self.down_mwh * tariff.energy_down_rs_mwh)  # fmt: skip


def _actual(source: LedgerSource, t0: float, t1: float, config: DsmConfig
            ) -> dict[str, list[tuple[float, float | None]]]:  # fmt: skip
    """The measured series: the meter's alone when configured, else each unit's."""
    if config.meter is None:
        return _series(source.telemetry(t0 - config.hold_s, t1), "power_kw", "unit")
    rows = source.telemetry(t0 - config.hold_s, t1, config.meter)
    if not rows:
        raise HistoryError(f"dsm.meter {config.meter!r}: no telemetry of it on that day",
                           path=source.path)  # fmt: skip
    return _series(rows, "power_kw")


def settle_day(source: LedgerSource, day: date, config: DsmConfig | None = None) -> list[Block]:
    """The ledger of the IST day ``day``: one :class:`Block` per block that has a schedule
    or an AGC instruction.

    Raises :class:`~vpp.errors.HistoryError` when no block has either, or when the
    configured meter has no telemetry that day.
    """
    config = config or DsmConfig()
    t0 = day_start(day)
    t1 = t0 + BLOCKS_PER_DAY * BLOCK_S
    # A day-ahead schedule is sent the day before; a day and a half back covers it.
    schedules = _schedules(source.commands(t0 - 1.5 * 86_400, t1))
    awards = _latest_awards(source.awards(day.isoformat()))
    rates, revenue = _rates(awards, config), _revenue(awards)
    day_rate = (
        sum(r for r, _ in rates.values()) / len(rates) if rates else config.fallback_rate_rs_mwh
    )
    agc_rows = source.agc(t0 - config.hold_s, t1)
    agc_times = [float(r["t"]) for r in agc_rows]
    samples: dict[str, list[tuple[float, float | None]]] | None = None
    ledger = []
    for b in range(BLOCKS_PER_DAY):
        start = t0 + b * BLOCK_S
        end = start + BLOCK_S
        market_mwh = _scheduled_mwh(schedules, start, end)
        if market_mwh is None and not any(start <= t < end for t in agc_times):
            continue
        if samples is None:
            samples = _actual(source, t0, t1, config)
        agc = _Agc.of(agc_rows, start, end, config.hold_s)
        instructed = agc.up_mwh - agc.down_mwh
        scheduled = (market_mwh or 0.0) + instructed
        actual = covered = 0.0
        for series in samples.values():
            mwh, seconds = energy_mwh(series, start, end, config.hold_s)
            actual += mwh
            covered += seconds
        coverage = 100.0 * covered / (BLOCK_S * len(samples)) if samples else 0.0
        deviation = actual - scheduled
        base = max(abs(scheduled), config.min_base_mw * BLOCK_H)
        if b in rates:
            rate, source_name = rates[b]
        else:
            rate, source_name = day_rate, "day mean" if rates else "fallback"
        if rate > config.rate_cap_rs_mwh:
            rate, source_name = config.rate_cap_rs_mwh, f"{source_name} capped"
        charge = band_charge(deviation, base, rate, config)
        market = revenue.get(b, 0.0)
        availability, energy = agc.payments(config.reserve)
        reserve = availability + energy
        ledger.append(Block(
            block=b, start=start,
            start_ist=datetime.fromtimestamp(start, IST).strftime("%H:%M"),
            market_mwh=market_mwh or 0.0, instructed_mwh=instructed,
            scheduled_mwh=scheduled, actual_mwh=actual, deviation_mwh=deviation,
            deviation_pct=100.0 * deviation / base if base > 0 else None,
            normal_rate_rs_mwh=rate, rate_source=source_name, dsm_charge_rs=charge,
            market_revenue_rs=market, reserved_up_mw=agc.up_mw_h / BLOCK_H,
            reserved_down_mw=agc.down_mw_h / BLOCK_H, regulation_up_mwh=agc.up_mwh,
            regulation_down_mwh=agc.down_mwh, reserve_availability_rs=availability,
            reserve_energy_rs=energy, reserve_rs=reserve, net_rs=market + reserve - charge,
            coverage_pct=coverage,
        ))  # fmt: skip
    if not ledger:
        raise HistoryError(f"no accepted schedule for {day.isoformat()} (IST)", path=source.path)
    return ledger


def totals(ledger: Sequence[Block]) -> Totals:
    """The sums of ``ledger``."""
    return Totals(
        blocks=len(ledger),
        scheduled_mwh=sum(b.scheduled_mwh for b in ledger),
        actual_mwh=sum(b.actual_mwh for b in ledger),
        deviation_mwh=sum(b.deviation_mwh for b in ledger),
        dsm_charge_rs=sum(b.dsm_charge_rs for b in ledger),
        market_revenue_rs=sum(b.market_revenue_rs for b in ledger),
        reserve_rs=sum(b.reserve_rs for b in ledger),
        net_rs=sum(b.net_rs for b in ledger),
    )
