"""The settlement ledger: per 15-minute block, what was scheduled, what was delivered, the
deviation charge under the Deviation Settlement Mechanism (DSM), and what the market paid.

Pure: :func:`settle_day` asks a :class:`LedgerSource` (the history, read-only) for rows
and computes; it writes nothing and reads no clock.

Per block of the IST day (96 blocks of :data:`~vpp.orchestrator.market.BLOCK_S`):

- **scheduled MWh**: the integral over the block of the schedule the campus accepted
  (``set_schedule`` commands with ``ok = 1``: kW per step from ``start``, ``block_s``
  apart). Per target, the last accepted schedule recorded before the block ends that
  covers the block counts (the gateway resends its schedules and re-trades RTM sessions;
  the latest one is what the fleet followed); the targets' schedules add up.
- **actual MWh**: the integral of each unit's measured power (telemetry ``power_kw``)
  over the block, summed over the units. Piecewise-constant (each sample held until the
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
  part at its multiplier times the normal rate, like tax brackets. Under-injection is
  payable (+), over-injection receivable (-).
- **market revenue** (Rs; + = received): accepted MW x clearing price x 0.25 h of each
  award for the block, sells +, buys -.
- **reserve** (Rs): reserve payments, 0 until AGC and reserve services are recorded.
- **net** = market revenue + reserve - DSM charge.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.errors import HistoryError
from vpp.orchestrator.market.products import BLOCK_H, BLOCK_S, BLOCKS_PER_DAY, IST, day_start

__all__ = [
    "LEDGER_COLUMNS",
    "Band",
    "Block",
    "DsmConfig",
    "LedgerSource",
    "Totals",
    "band_charge",
    "energy_mwh",
    "settle_day",
    "totals",
]

_CHECK = " (check against the current regulation)"


class Band(BaseModel):
    """A deviation band: deviation up to ``up_to_pct`` % of the base (None: no upper edge)
    is charged at ``multiplier`` times the normal rate."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    up_to_pct: float | None = Field(default=None, gt=0, description="upper edge, % of base")
    multiplier: float = Field(ge=0, description="times the normal rate")


def _bands(bands: Sequence[Band], side: str) -> None:
    edges = [b.up_to_pct for b in bands]
    if not bands or edges[-1] is not None:
        raise ValueError(f"{side}: the last band must have no upper edge (up_to_pct: null)")
    if None in edges[:-1]:
        raise ValueError(f"{side}: only the last band may have no upper edge")
    bounded = [e for e in edges[:-1] if e is not None]
    if any(b <= a for a, b in itertools.pairwise(bounded)):
        raise ValueError(f"{side}: band edges must increase")


class DsmConfig(BaseModel):
    """The Deviation Settlement Mechanism as a table (defaults: the structure of the CERC
    DSM Regulations 2024 for a general seller; every figure to be checked)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    rate_products: tuple[Literal["DAM", "RTM"], ...] = Field(
        default=("DAM", "RTM"), min_length=1,
        description="normal rate: the highest clearing price of these products" + _CHECK,
    )  # fmt: skip
    rate_cap_rs_mwh: float = Field(
        default=10_000.0, gt=0, description="cap on the normal rate, Rs/MWh" + _CHECK
    )
    fallback_rate_rs_mwh: float = Field(
        default=5_000.0, ge=0,
        description="normal rate of a day without any clearing price, Rs/MWh" + _CHECK,
    )  # fmt: skip
    tolerance_pct: float = Field(
        default=0.0, ge=0, description="deviation up to this % of base is not charged" + _CHECK
    )
    min_base_mw: float = Field(
        default=0.0, ge=0,
        description="percent base floor, MW (a zero schedule has no % otherwise)" + _CHECK,
    )  # fmt: skip
    over_injection: tuple[Band, ...] = Field(
        default=(Band(up_to_pct=10.0, multiplier=1.0), Band(multiplier=0.0)),
        description="receivable for injection above schedule, by band" + _CHECK,
    )
    under_injection: tuple[Band, ...] = Field(
        default=(
            Band(up_to_pct=10.0, multiplier=1.0),
            Band(up_to_pct=15.0, multiplier=1.5),
            Band(multiplier=2.0),
        ),
        description="payable for injection below schedule, by band" + _CHECK,
    )
    hold_s: float = Field(
        default=10.0, gt=0, description="metering: how long a telemetry sample holds, s"
    )

    @model_validator(mode="after")
    def _tables(self) -> DsmConfig:
        _bands(self.over_injection, "over_injection")
        _bands(self.under_injection, "under_injection")
        return self


#: Columns of the ledger (the CSV's, in order).
LEDGER_COLUMNS = (
    "block", "start", "start_ist", "scheduled_mwh", "actual_mwh", "deviation_mwh",
    "deviation_pct", "normal_rate_rs_mwh", "rate_source", "dsm_charge_rs",
    "market_revenue_rs", "reserve_rs", "net_rs", "coverage_pct",
)  # fmt: skip


@dataclass(frozen=True)
class Block:
    """One row of the ledger (see the module docstring for each figure and its sign)."""

    block: int
    start: float
    start_ist: str
    scheduled_mwh: float
    actual_mwh: float
    deviation_mwh: float
    deviation_pct: float | None
    normal_rate_rs_mwh: float
    rate_source: str
    dsm_charge_rs: float
    market_revenue_rs: float
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


# ---- the pieces ----


def band_charge(deviation_mwh: float, base_mwh: float, rate_rs_mwh: float,
                config: DsmConfig) -> float:  # fmt: skip
    """The DSM charge (Rs, + payable) of a deviation of ``deviation_mwh`` (+ over-injection)
    from a percent base of ``base_mwh``, at the normal rate ``rate_rs_mwh``."""
    size = abs(deviation_mwh)
    if size == 0.0:
        return 0.0
    bands = config.over_injection if deviation_mwh > 0 else config.under_injection
    lower = min(size, config.tolerance_pct / 100.0 * base_mwh)
    amount = 0.0
    for band in bands:
        upper = size if band.up_to_pct is None else min(size, band.up_to_pct / 100.0 * base_mwh)
        if upper > lower:
            amount += (upper - lower) * band.multiplier * rate_rs_mwh
            lower = upper
    return amount if deviation_mwh < 0 else 0.0 - amount


def energy_mwh(samples: Sequence[tuple[float, float | None]], start: float, end: float,
               hold_s: float) -> tuple[float, float]:  # fmt: skip
    """One unit's energy (MWh) from ``start`` to ``end`` and the seconds covered, from its
    samples (t, kW) in time order: each held until the next, for at most ``hold_s``; a
    sample without a value holds nothing."""
    kwh = covered = 0.0
    for i, (t, kw) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else math.inf
        a, b = max(t, start), min(nxt, t + hold_s, end)
        if kw is None or b <= a:
            continue
        kwh += kw * (b - a) / 3600.0
        covered += b - a
    return kwh / 1000.0, covered


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


def settle_day(source: LedgerSource, day: date, config: DsmConfig | None = None) -> list[Block]:
    """The ledger of the IST day ``day``: one :class:`Block` per block that has a schedule.

    Raises :class:`~vpp.errors.HistoryError` when no accepted schedule covers any block.
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
    samples: dict[str, list[tuple[float, float | None]]] = {}
    for r in source.telemetry(t0 - config.hold_s, t1):
        kw = r.get("power_kw")
        samples.setdefault(str(r["unit"]), []).append(
            (float(r["t"]), None if kw is None else float(kw))
        )
    ledger = []
    for b in range(BLOCKS_PER_DAY):
        start = t0 + b * BLOCK_S
        end = start + BLOCK_S
        scheduled = _scheduled_mwh(schedules, start, end)
        if scheduled is None:
            continue
        actual = covered = 0.0
        for unit_samples in samples.values():
            mwh, seconds = energy_mwh(unit_samples, start, end, config.hold_s)
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
        reserve = 0.0
        ledger.append(Block(
            block=b, start=start,
            start_ist=datetime.fromtimestamp(start, IST).strftime("%H:%M"),
            scheduled_mwh=scheduled, actual_mwh=actual, deviation_mwh=deviation,
            deviation_pct=100.0 * deviation / base if base > 0 else None,
            normal_rate_rs_mwh=rate, rate_source=source_name, dsm_charge_rs=charge,
            market_revenue_rs=market, reserve_rs=reserve, net_rs=market + reserve - charge,
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
