"""The settlement ledger on the history of a real run of the default site
(tests/reports/conftest.py), checked block by block against the raw rows read with SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.orchestrator.procs import vpp
from tests.reports.conftest import raw_rows
from vpp.orchestrator.market import block_of
from vpp.orchestrator.market.settlement import DsmConfig, settle_day
from vpp.reports.query import HistoryReader
from vpp.reports.tables import from_csv

HOLD_S = DsmConfig().hold_s


def _scheduled_kw(history: Path, start: float) -> float:
    """The kW the last accepted set_schedule recorded before the block's end gave it."""
    rows = raw_rows(history, "SELECT params FROM commands WHERE command = 'set_schedule' "
                    "AND ok = 1 AND t < ? ORDER BY id", (start + 900,))  # fmt: skip
    kw = None
    for r in rows:
        p = json.loads(r["params"])
        i = round((start - p["start"]) / p["block_s"])
        if 0 <= i < len(p["kw"]) and p["block_s"] == 900.0:
            kw = p["kw"][i]
    assert kw is not None
    return float(kw)


def _actual_kwh(history: Path, start: float) -> float:
    rows = raw_rows(history, "SELECT unit, t, power_kw FROM telemetry WHERE t >= ? AND t <= ? "
                    "ORDER BY unit, t, id", (start - HOLD_S, start + 900))  # fmt: skip
    kws = 0.0
    for i, r in enumerate(rows):
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        until = nxt["t"] if nxt is not None and nxt["unit"] == r["unit"] else float("inf")
        held = min(until, r["t"] + HOLD_S, start + 900) - max(r["t"], start)
        if r["power_kw"] is not None and held > 0:
            kws += r["power_kw"] * held
    return kws / 3600.0


def _revenue(history: Path, day: str, block: int) -> float:
    rows = raw_rows(history, "SELECT b.side, r.accepted_mw, r.clearing_price FROM results r "
                    "JOIN bids b ON b.bid_id = r.bid_id WHERE b.delivery = ? AND r.block = ?",
                    (day, block))  # fmt: skip
    # The default site bids each block once: no bid id is cleared twice.
    return sum((1 if r["side"] == "sell" else -1) * r["accepted_mw"] * r["clearing_price"] * 0.25
               for r in rows)  # fmt: skip


def test_the_ledger_of_a_real_run_matches_its_rows(history: Path, tmp_path: Path) -> None:
    (first,) = raw_rows(history, "SELECT MIN(t) AS t FROM telemetry")[0].values()
    day, _ = block_of(first)
    with HistoryReader(history) as reader:
        ledger = settle_day(reader, day)
    run = [b for b in ledger if b.coverage_pct > 0]
    assert run, "the run's blocks are in the ledger"
    for b in run:
        scheduled = _scheduled_kw(history, b.start) * 0.25 / 1000
        actual = _actual_kwh(history, b.start) / 1000
        assert b.scheduled_mwh == pytest.approx(scheduled)
        assert b.actual_mwh == pytest.approx(actual)
        dev = actual - scheduled
        assert b.deviation_mwh == pytest.approx(dev)
        # Default table: under-injection 1.0 x to 10 %, 1.5 x to 15 %, 2.0 x beyond;
        # over-injection 1.0 x to 10 %, nothing beyond.
        base, size, rate = abs(scheduled), abs(dev), b.normal_rate_rs_mwh
        if dev < 0:
            pay = (min(size, 0.10 * base) + 1.5 * max(0.0, min(size, 0.15 * base) - 0.10 * base)
                   + 2.0 * max(0.0, size - 0.15 * base)) * rate  # fmt: skip
        else:
            pay = -min(size, 0.10 * base) * rate
        assert b.dsm_charge_rs == pytest.approx(pay)
        assert b.market_revenue_rs == pytest.approx(_revenue(history, day.isoformat(), b.block))
    r = vpp("settle", day.isoformat(), "--history", str(history), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = from_csv((tmp_path / f"settlement-{day.isoformat()}.csv").read_text())
    assert [row["block"] for row in rows] == [b.block for b in ledger]
