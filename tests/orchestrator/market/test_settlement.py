"""The settlement ledger and ``vpp settle``: a block worked out by hand from a small real
history (written with :class:`History` as the recorder writes it), the DSM table's
effect on the charge, the CSV read back, the command's errors, and properties."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.orchestrator.procs import vpp
from vpp.errors import HistoryError
from vpp.orchestrator.history import History
from vpp.orchestrator.market import IST
from vpp.orchestrator.market.settlement import (
    LEDGER_COLUMNS,
    Band,
    Block,
    DsmConfig,
    band_charge,
    energy_mwh,
    settle_day,
    totals,
)
from vpp.reports.query import HistoryReader
from vpp.reports.tables import from_csv, to_csv

DAY = date(2026, 1, 5)
#: 10:00 IST on DAY: the start of block 40 (40 x 15 min).
T = datetime(2026, 1, 5, 10, 0, tzinfo=IST).timestamp()
#: Samples hold long here, so that a few rows cover a block (the default is 10 s).
HOLD = DsmConfig(hold_s=600.0)


def _command(h: History, t: float, params: dict[str, object], ok: int) -> None:
    # As the recorder writes a campus's audit of the market's set_schedule.
    h.add("commands", {
        "t": t, "server": "campus", "target": "campus", "command": "set_schedule",
        "params": params, "identity": "market", "role": "market", "ok": ok,
        "refused": None if ok else "invalid", "detail": "",
    })  # fmt: skip


def _award(h: History, t: float, product: str, delivery: str, block: int, side: str,
           mw: float, price: float) -> None:  # fmt: skip
    bid_id = f"{product}-{delivery}-{block:02d}-{side}"
    h.add("bids", {"t": t, "bid_id": bid_id, "product": product, "delivery": delivery,
                   "block": block, "side": side, "volume_mw": mw, "price": 0.0})  # fmt: skip
    h.add("results", {"t": t + 1, "bid_id": bid_id, "block": block, "accepted_mw": mw,
                      "clearing_price": price})  # fmt: skip


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history with blocks 40-42 of DAY scheduled (see each test for its rows)."""
    path = tmp_path_factory.mktemp("settle") / "history.db"
    h = History(path)
    day = DAY.isoformat()
    # Block 40 1000 kW, block 41 400 kW, block 42 0 kW; a refused schedule that must not
    # count; a revision of block 41 to 800 kW during it (counts) and one after it ended
    # (does not).
    _command(h, T - 60, {"start": T, "block_s": 900.0, "kw": [1000.0, 400.0, 0.0]}, 1)
    _command(h, T - 30, {"start": T, "block_s": 900.0, "kw": [5000.0, 5000.0]}, 0)
    _command(h, T + 1000, {"start": T + 900, "block_s": 900.0, "kw": [800.0]}, 1)
    _command(h, T + 1900, {"start": T + 900, "block_s": 900.0, "kw": [9999.0]}, 1)
    # Block 40: DAM sells 1.2 MW at 4000, RTM buys 0.2 MW at 6000; the day before's
    # block 40 at 99999 belongs to another day.
    _award(h, T - 86_000, "DAM", day, 40, "sell", 1.2, 4000.0)
    _award(h, T - 600, "RTM", day, 40, "buy", 0.2, 6000.0)
    _award(h, T - 90_000, "DAM", "2026-01-04", 40, "sell", 1.0, 99_999.0)
    # Block 42 cleared twice (the gateway re-run): only the later result counts.
    _award(h, T - 86_000, "DAM", day, 42, "sell", 0.4, 3000.0)
    _award(h, T - 85_000, "DAM", day, 42, "sell", 0.8, 3500.0)
    # bess-1: 500 kW from before the block, 400 kW from +300 s, 450 kW from +600 s.
    for dt, kw in ((-100, 500.0), (300, 400.0), (600, 450.0)):
        h.add("telemetry", {"t": T + dt, "unit": "bess-1", "power_kw": kw, "online": 1})
    # bess-2: 300 kW from the start, no value at +450 s (a gap), 200 kW from +540 s.
    for dt, kw2 in ((0, 300.0), (450, None), (540, 200.0)):
        h.add("telemetry", {"t": T + dt, "unit": "bess-2", "power_kw": kw2, "online": 1})
    h.close()
    return path


def _ledger(path: Path, config: DsmConfig = HOLD) -> dict[int, Block]:
    with HistoryReader(path) as reader:
        return {b.block: b for b in settle_day(reader, DAY, config)}


def test_a_block_worked_out_by_hand(history: Path) -> None:
    b = _ledger(history)[40]
    assert b.start == T and b.start_ist == "10:00"
    # Scheduled: 1000 kW x 0.25 h = 250 kWh (the refused 5000 kW does not count).
    assert b.scheduled_mwh == pytest.approx(0.250)
    # bess-1: (500 + 400 + 450) kW x 300 s = 405000 kWs = 112.5 kWh;
    # bess-2: 300 kW x 450 s + 200 kW x 360 s = 135000 + 72000 kWs = 57.5 kWh.
    assert b.actual_mwh == pytest.approx(0.170)
    # 0.170 - 0.250 = -0.080 MWh = -32 % of 0.250.
    assert b.deviation_mwh == pytest.approx(-0.080)
    assert b.deviation_pct == pytest.approx(-32.0)
    # Normal rate: the higher of DAM 4000 and RTM 6000.
    assert (b.normal_rate_rs_mwh, b.rate_source) == (6000.0, "RTM")
    # Under-injection, base 0.25 MWh: 0-10 % = 0.025 MWh x 1.0 x 6000 = 150;
    # 10-15 % = 0.0125 x 1.5 x 6000 = 112.5; beyond = 0.0425 x 2.0 x 6000 = 510.
    assert b.dsm_charge_rs == pytest.approx(772.5)
    # 1.2 MW x 4000 x 0.25 h - 0.2 MW x 6000 x 0.25 h = 1200 - 300.
    assert b.market_revenue_rs == pytest.approx(900.0)
    assert b.reserve_rs == 0.0
    assert b.net_rs == pytest.approx(900.0 - 772.5)
    # bess-1 900 s and bess-2 450 + 360 s of 2 x 900 s.
    assert b.coverage_pct == pytest.approx(95.0)


def test_the_last_schedule_recorded_before_the_block_ends_counts(history: Path) -> None:
    ledger = _ledger(history)
    assert sorted(ledger) == [40, 41, 42]
    # The revision at +1000 s (800 kW), not the 400 kW before it nor the 9999 after.
    assert ledger[41].scheduled_mwh == pytest.approx(0.200)
    # No price for block 41: the day's mean of the blocks with one: (6000 + 3500) / 2.
    assert (ledger[41].normal_rate_rs_mwh, ledger[41].rate_source) == (4750.0, "day mean")


def test_a_block_cleared_again_counts_its_latest_result(history: Path) -> None:
    b = _ledger(history)[42]
    # 0.8 MW x 3500 x 0.25 h (not 0.4 MW at 3000); its rate is that price.
    assert b.market_revenue_rs == pytest.approx(700.0)
    assert (b.normal_rate_rs_mwh, b.rate_source) == (3500.0, "DAM")
    # Nothing scheduled, nothing delivered (the units' last samples held out before it):
    # no deviation, no charge, and no % of a zero base.
    assert (b.scheduled_mwh, b.actual_mwh, b.dsm_charge_rs) == (0.0, 0.0, 0.0)
    assert b.deviation_pct is None and b.coverage_pct == 0.0


def test_the_table_changes_the_charge(history: Path) -> None:
    # Rates from the DAM alone: 4000 -> 0.025 x 4000 + 0.0125 x 1.5 x 4000 + 0.0425 x 2 x
    # 4000 = 100 + 75 + 340.
    dam = _ledger(history, HOLD.model_copy(update={"rate_products": ("DAM",)}))[40]
    assert dam.dsm_charge_rs == pytest.approx(515.0)
    # Capped at 5000: 125 + 93.75 + 425.
    capped = _ledger(history, HOLD.model_copy(update={"rate_cap_rs_mwh": 5000.0}))[40]
    assert (capped.normal_rate_rs_mwh, capped.rate_source) == (5000.0, "RTM capped")
    assert capped.dsm_charge_rs == pytest.approx(643.75)
    # A tolerance of 5 % (0.0125 MWh) free: band 1 keeps 0.0125 x 6000 = 75; + 112.5 + 510.
    tol = _ledger(history, HOLD.model_copy(update={"tolerance_pct": 5.0}))[40]
    assert tol.dsm_charge_rs == pytest.approx(697.5)
    # One flat band at 3 x: 0.08 x 3 x 6000.
    flat = HOLD.model_copy(update={"under_injection": (Band(multiplier=3.0),)})
    assert _ledger(history, flat)[40].dsm_charge_rs == pytest.approx(1440.0)


def test_over_injection_is_receivable_by_band() -> None:
    cfg = DsmConfig()
    # +0.05 MWh on 0.25: 10 % = 0.025 x 1.0 x 6000 = 150 receivable, the rest at 0.
    assert band_charge(0.05, 0.25, 6000.0, cfg) == pytest.approx(-150.0)
    bands = (Band(up_to_pct=20.0, multiplier=0.5), Band(multiplier=0.25))
    cfg2 = DsmConfig(over_injection=bands)
    # +0.08: 20 % = 0.05 x 0.5 x 6000 = 150; 0.03 x 0.25 x 6000 = 45.
    assert band_charge(0.08, 0.25, 6000.0, cfg2) == pytest.approx(-195.0)


def test_a_zero_base_charges_the_last_band_and_a_base_the_first() -> None:
    # No base: all of -0.01 MWh in the last band: 0.01 x 2.0 x 1000.
    assert band_charge(-0.01, 0.0, 1000.0, DsmConfig()) == pytest.approx(20.0)
    # A base of 1 MW x 0.25 h: 0.01 is 4 %, in the first band: 0.01 x 1.0 x 1000.
    assert band_charge(-0.01, 1.0 * 0.25, 1000.0, DsmConfig()) == pytest.approx(10.0)


def test_band_tables_are_checked() -> None:
    with pytest.raises(ValidationError, match="last band"):
        DsmConfig(under_injection=(Band(up_to_pct=10.0, multiplier=1.0),))
    with pytest.raises(ValidationError, match="increase"):
        bands = (Band(up_to_pct=10.0, multiplier=1.0), Band(up_to_pct=5.0, multiplier=1.5),
                 Band(multiplier=2.0))  # fmt: skip
        DsmConfig(under_injection=bands)
    with pytest.raises(ValidationError):
        Band(multiplier=-1.0)


def test_totals_and_the_csv_round_trip(history: Path) -> None:
    ledger = list(_ledger(history).values())
    total = totals(ledger)
    assert total.blocks == 3
    assert total.scheduled_mwh == pytest.approx(0.250 + 0.200 + 0.0)
    assert total.market_revenue_rs == pytest.approx(900.0 + 0.0 + 700.0)
    assert total.net_rs == pytest.approx(sum(b.net_rs for b in ledger))
    rows = [b.row() for b in ledger]
    assert from_csv(to_csv(rows, LEDGER_COLUMNS)) == rows


def test_no_schedule_for_the_day_is_a_history_error(history: Path) -> None:
    with HistoryReader(history) as reader, pytest.raises(HistoryError, match="no accepted"):
        settle_day(reader, date(2026, 1, 6))


# ---- the command ----


def test_settle_writes_the_statement(history: Path, tmp_path: Path) -> None:
    dsm = tmp_path / "dsm.yaml"
    dsm.write_text("hold_s: 600\n")
    r = vpp("settle", DAY.isoformat(), "--history", str(history), "--dsm", str(dsm),
            "--out", str(tmp_path / "out"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "3 blocks" in r.stdout and "net Rs" in r.stdout
    rows = from_csv((tmp_path / "out" / "settlement-2026-01-05.csv").read_text())
    assert [row["block"] for row in rows] == [40, 41, 42]
    assert rows[0]["dsm_charge_rs"] == pytest.approx(772.5)
    html = (tmp_path / "out" / "settlement-2026-01-05.html").read_text()
    # Three charts, and the ledger's exact figures (those of the CSV) in the table.
    assert html.count("<svg") == 3
    assert f'data-value="{rows[0]["dsm_charge_rs"]!r}"' in html


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["2026-01-05", "--history", "/nonexistent/h.db"], "no history file"),
        (["2026-01-06"], "no accepted schedule"),
        (["5 Jan"], "cannot read the day"),
        (["2026-01-05", "--dsm", "BAD"], "tolerance_pct"),
    ],
)
def test_settle_errors_are_one_line_and_exit_2(
    history: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    args = [a.replace("BAD", str(tmp_path / "bad.yaml")) for a in args]
    (tmp_path / "bad.yaml").write_text("tolerance_pct: -1\n")
    if "--history" not in args:
        args += ["--history", str(history)]
    r = vpp("settle", *args, "--out", str(tmp_path))
    assert r.returncode == 2
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("settlement-*"))


# ---- properties ----

_dev = st.floats(-10.0, 10.0, allow_nan=False)
_base = st.floats(0.0, 10.0, allow_nan=False)
_rate = st.floats(0.0, 20_000.0, allow_nan=False)


@given(_base, _rate)
def test_no_deviation_no_charge(base: float, rate: float) -> None:
    assert band_charge(0.0, base, rate, DsmConfig()) == 0.0


@given(_dev, _dev, _base, _rate)
def test_the_charge_falls_as_injection_rises(d1: float, d2: float, base: float,
                                             rate: float) -> None:  # fmt: skip
    lo, hi = sorted((d1, d2))
    cfg = DsmConfig()
    # More injection is never more to pay; under-injection pays, over-injection receives.
    assert band_charge(lo, base, rate, cfg) >= band_charge(hi, base, rate, cfg) - 1e-6
    assert band_charge(-abs(d1), base, rate, cfg) >= 0.0 >= band_charge(abs(d1), base, rate, cfg)


@given(_dev, _base, _rate, st.integers(0, 2), st.floats(0.0, 5.0))
def test_a_higher_multiplier_never_charges_less(dev: float, base: float, rate: float,
                                                i: int, extra: float) -> None:  # fmt: skip
    cfg = DsmConfig()
    bands = list(cfg.under_injection)
    bands[i] = Band(up_to_pct=bands[i].up_to_pct, multiplier=bands[i].multiplier + extra)
    more = cfg.model_copy(update={"under_injection": tuple(bands)})
    d = -abs(dev)
    assert band_charge(d, base, rate, more) >= band_charge(d, base, rate, cfg) - 1e-6


@given(st.floats(-2000.0, 2000.0, allow_nan=False), st.integers(1, 10))
def test_constant_power_gives_power_times_time(kw: float, every_s: int) -> None:
    start = 1_000_000.0
    samples: list[tuple[float, float | None]] = [
        (start - every_s + k * every_s, kw) for k in range(900 // every_s + 2)
    ]
    mwh, covered = energy_mwh(samples, start, start + 900.0, hold_s=10.0)
    # kW x 0.25 h / 1000.
    assert covered == pytest.approx(900.0)
    assert mwh == pytest.approx(kw * 0.25 / 1000.0, abs=1e-9)
    assert math.isfinite(mwh)
