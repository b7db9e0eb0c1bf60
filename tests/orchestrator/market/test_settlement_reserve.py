"""The ledger with secondary reserve and a meter: AGC instructions (the campus's ``agc``
events) count as schedule, reserve availability and energy are paid, the meter's series
is the actual energy; one block worked out by hand, and ``vpp settle --config`` using the
site's ``dsm`` table."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from tests.orchestrator.procs import vpp
from vpp.errors import HistoryError
from vpp.orchestrator.history import History
from vpp.orchestrator.market import IST
from vpp.orchestrator.market.settlement import (
    Block,
    DsmConfig,
    ReserveTariff,
    settle_day,
)
from vpp.reports.query import HistoryReader
from vpp.reports.tables import from_csv

DAY = date(2026, 1, 5)
#: 10:00 IST: the start of block 40.
T = datetime(2026, 1, 5, 10, 0, tzinfo=IST).timestamp()
TARIFF = ReserveTariff(capacity_up_rs_mw_h=200.0, capacity_down_rs_mw_h=100.0,
                       energy_up_rs_mwh=6000.0, energy_down_rs_mwh=-1000.0)  # fmt: skip
#: Samples hold 600 s, so a few rows cover a block; the meter is the actual.
METERED = DsmConfig(hold_s=600.0, meter="meter-1", reserve=TARIFF)


def _agc(h: History, t: float, offset_mw: float, up: float = 1.0, down: float = 0.5) -> None:
    # As the recorder writes the campus's agc event: the data as JSON in the text.
    data = {"setpoint_mw": offset_mw, "requested_mw": offset_mw, "offset_mw": offset_mw,
            "status": "following", "reserved_up_mw": up, "reserved_down_mw": down}  # fmt: skip
    h.add("events", {"t": t, "source": "campus", "kind": "agc", "severity": "info",
                     "text": json.dumps(data, sort_keys=True)})  # fmt: skip


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reserve") / "history.db"
    h = History(path)
    # The market: block 40 at 2000 kW, sold on the DAM at Rs 5000/MWh.
    h.add("commands", {
        "t": T - 3600, "server": "campus", "target": "campus", "command": "set_schedule",
        "params": {"start": T, "block_s": 900.0, "kw": [2000.0]}, "identity": "market",
        "role": "market", "ok": 1, "refused": None, "detail": "",
    })  # fmt: skip
    bid = "DAM-2026-01-05-40-sell"
    h.add("bids", {"t": T - 86_000, "bid_id": bid, "product": "DAM", "delivery": "2026-01-05",
                   "block": 40, "side": "sell", "volume_mw": 2.0, "price": 0.0})  # fmt: skip
    h.add("results", {"t": T - 85_999, "bid_id": bid, "block": 40, "accepted_mw": 2.0,
                      "clearing_price": 5000.0})  # fmt: skip
    # AGC: +0.6 MW for 300 s, -0.3 MW for 300 s, 0 for 300 s; then +0.1 MW in block 41,
    # which the market did not schedule.
    for dt, mw in ((0, 0.6), (300, -0.3), (600, 0.0), (1000, 0.1)):
        _agc(h, T + dt, mw)
    # The meter at the connection point: 1848 kW all through block 40.
    for dt in (-1, 450):
        h.add("telemetry", {"t": T + dt, "unit": "meter-1", "power_kw": 1848.0, "online": 1})
    # A unit's telemetry says something else (1000 kW): with the meter it does not count.
    h.add("telemetry", {"t": T, "unit": "bess-1", "power_kw": 1000.0, "online": 1})
    h.add("telemetry", {"t": T + 450, "unit": "bess-1", "power_kw": 1000.0, "online": 1})
    h.close()
    return path


def _ledger(path: Path, config: DsmConfig = METERED) -> dict[int, Block]:
    with HistoryReader(path) as reader:
        return {b.block: b for b in settle_day(reader, DAY, config)}


def test_a_block_with_agc_and_a_meter_worked_out_by_hand(history: Path) -> None:
    b = _ledger(history)[40]
    # Market: 2000 kW x 0.25 h = 0.5 MWh.
    assert b.market_mwh == pytest.approx(0.5)
    # AGC: up 0.6 MW x 300 s = 0.05 MWh; down 0.3 MW x 300 s = 0.025 MWh; instructed
    # 0.05 - 0.025 = +0.025 MWh, a schedule revision: scheduled 0.5 + 0.025 = 0.525 MWh.
    assert (b.regulation_up_mwh, b.regulation_down_mwh) == pytest.approx((0.05, 0.025))
    assert b.instructed_mwh == pytest.approx(0.025)
    assert b.scheduled_mwh == pytest.approx(0.525)
    # Actual from the meter: 1848 kW x 0.25 h = 0.462 MWh (not bess-1's 0.25).
    assert b.actual_mwh == pytest.approx(0.462)
    assert b.coverage_pct == pytest.approx(100.0)
    # Deviation: 0.462 - 0.525 = -0.063 MWh = -12 % of 0.525.
    assert b.deviation_mwh == pytest.approx(-0.063)
    assert b.deviation_pct == pytest.approx(-12.0)
    # Normal rate: the DAM's 5000. Under-injection by band: 0-10 % = 0.0525 MWh x 1.0 x
    # 5000 = 262.5; 10-12 % = 0.0105 MWh x 1.5 x 5000 = 78.75; charge Rs 341.25 payable.
    assert (b.normal_rate_rs_mwh, b.rate_source) == (5000.0, "DAM")
    assert b.dsm_charge_rs == pytest.approx(341.25)
    # Market revenue: 2.0 MW x 5000 x 0.25 h = Rs 2500.
    assert b.market_revenue_rs == pytest.approx(2500.0)
    # Reserve held all block: 1.0 MW up x 0.25 h x 200 = 50; 0.5 MW down x 0.25 h x 100
    # = 12.5; availability Rs 62.5. Energy: 0.05 MWh up x 6000 = 300; 0.025 MWh down x
    # -1000 = -25 (the plant pays); Rs 275. Reserve Rs 337.5.
    assert (b.reserved_up_mw, b.reserved_down_mw) == pytest.approx((1.0, 0.5))
    assert b.reserve_availability_rs == pytest.approx(62.5)
    assert b.reserve_energy_rs == pytest.approx(275.0)
    assert b.reserve_rs == pytest.approx(337.5)
    # Net: 2500 + 337.5 - 341.25.
    assert b.net_rs == pytest.approx(2496.25)


def test_following_agc_exactly_is_no_deviation(history: Path) -> None:
    # Without counting the instruction the same delivery would be judged on 0.5 MWh:
    # the instructed 0.025 MWh is what moves the base.
    b = _ledger(history)[40]
    assert b.deviation_mwh == pytest.approx(b.actual_mwh - b.market_mwh - b.instructed_mwh)
    assert b.deviation_mwh != pytest.approx(b.actual_mwh - b.market_mwh)


def test_a_block_with_agc_and_no_market_schedule_is_settled(history: Path) -> None:
    ledger = _ledger(history)
    assert sorted(ledger) == [40, 41]
    b = ledger[41]
    # +0.1 MW from 10:16:40 held 600 s: 0.1 x 600 / 3600 MWh; the 0 of 10:10 before it.
    assert b.market_mwh == 0.0
    assert b.instructed_mwh == pytest.approx(0.1 * 600 / 3600)
    assert b.regulation_up_mwh == pytest.approx(0.1 * 600 / 3600)
    # Reserve held from 10:15 (the 10:10 event holds to 10:20) to 10:26:40: 700 s x 1 MW.
    assert b.reserved_up_mw == pytest.approx(1.0 * 700 / 900)
    assert b.reserve_availability_rs == pytest.approx((200 * 1.0 + 100 * 0.5) * 700 / 3600)


def test_without_the_meter_every_telemetry_series_adds_up(history: Path) -> None:
    # The units' sum: bess-1 1000 kW and the meter's series 1848 kW both count (a history
    # that records a meter needs dsm.meter); the reserve figures do not depend on it.
    plain = _ledger(history, METERED.model_copy(update={"meter": None}))[40]
    assert plain.actual_mwh == pytest.approx(0.25 + 0.462)
    assert plain.reserve_rs == pytest.approx(337.5)
    # The default tariff pays energy up only: 0.05 MWh x 5500.
    default = _ledger(history, DsmConfig(hold_s=600.0, meter="meter-1"))[40]
    assert default.reserve_rs == pytest.approx(0.05 * 5500.0)


def test_a_meter_without_telemetry_is_a_history_error(history: Path) -> None:
    with HistoryReader(history) as reader, pytest.raises(HistoryError, match="'meter-9'"):
        settle_day(reader, DAY, METERED.model_copy(update={"meter": "meter-9"}))


def _site_yaml(tmp_path: Path, history: Path, dsm: dict[str, object]) -> Path:
    unit = {"id": "bess-1", "rated_power_kw": 500, "capacity_kwh": 1000,
            "inverter": {"protocol": "modbus_tcp", "config": {"host": "127.0.0.1"}}}
    data = {"field": [{"id": "field-a", "units": [unit]}], "history": {"path": str(history)},
            "dsm": dsm}  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_settle_with_the_sites_dsm_table(history: Path, tmp_path: Path) -> None:
    dsm = {"hold_s": 600, "meter": "meter-1", "reserve": TARIFF.model_dump()}
    config = _site_yaml(tmp_path, history, dsm)
    r = vpp("settle", DAY.isoformat(), "--config", str(config), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "2 blocks" in r.stdout and "reserve Rs" in r.stdout
    rows = from_csv((tmp_path / "settlement-2026-01-05.csv").read_text())
    assert rows[0]["reserve_rs"] == pytest.approx(337.5)
    assert rows[0]["actual_mwh"] == pytest.approx(0.462)
    html = (tmp_path / "settlement-2026-01-05.html").read_text()
    assert "the meter &#x27;meter-1&#x27;" in html and html.count("<svg") == 3
    # --dsm overrides the site's table.
    (tmp_path / "dsm.yaml").write_text("hold_s: 600\n")
    r = vpp("settle", DAY.isoformat(), "--config", str(config), "--dsm",
            str(tmp_path / "dsm.yaml"), "--out", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = from_csv((tmp_path / "settlement-2026-01-05.csv").read_text())
    assert rows[0]["actual_mwh"] == pytest.approx(0.712)


def test_settle_errors_of_the_site_table_are_one_line(history: Path, tmp_path: Path) -> None:
    bad = _site_yaml(tmp_path, history, {"meter": "meter-9"})
    r = vpp("settle", DAY.isoformat(), "--config", str(bad), "--out", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "'meter-9'" in r.stderr
    data = yaml.safe_load(bad.read_text())
    data["dsm"] = {"reserve": {"capacity_up_rs_mw_h": -5}}
    bad.write_text(yaml.safe_dump(data))
    r = vpp("settle", DAY.isoformat(), "--config", str(bad), "--out", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "capacity_up_rs_mw_h" in r.stderr
    assert not list(tmp_path.glob("settlement-*"))
