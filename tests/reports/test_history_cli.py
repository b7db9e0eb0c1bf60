"""``vpp history`` on the history of a real run (tests/reports/conftest.py), checked against
the history's rows read with plain SQL."""

from __future__ import annotations

import csv
import io
import math
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.orchestrator.procs import vpp
from tests.reports.conftest import raw_events, raw_rows
from vpp.orchestrator.history import History
from vpp.reports.query import UNIT_COLUMNS, HistoryReader
from vpp.reports.tables import from_csv

MARGIN = 5.0


def _ended(history: Path) -> dict[str, float]:
    return next(d for d in raw_events(history, "frequency_event") if d["phase"] == "end")


def test_events_lists_the_event_with_its_recorded_figures_and_verdict(history: Path) -> None:
    end = _ended(history)
    verdict = next(
        ("pass" if c["fleet"]["passed"] else "fail") if c["fleet"] else "not judged"
        for c in raw_events(history, "compliance")
        if c["event_start"] == end["start"]
    )
    r = vpp("history", "events", "--history", str(history), "--csv")
    assert r.returncode == 0, r.stderr
    rows = from_csv(r.stdout)
    ev = next(row for row in rows if row["start"] == end["start"])
    assert ev["number"] == rows.index(ev) + 1
    assert ev["end"] == end["end"] and ev["direction"] == end["direction"]
    assert ev["nadir_hz"] == end["nadir_hz"] and ev["zenith_hz"] == end["zenith_hz"]
    extreme = end["nadir_hz"] if end["direction"] == "under" else end["zenith_hz"]
    assert ev["extreme_hz"] == extreme
    assert ev["max_rocof_hz_s"] == end["max_rocof_hz_s"]
    assert ev["verdict"] == verdict
    table = vpp("history", "events", "--history", str(history))
    assert table.returncode == 0
    # A header line and one line per event, the verdict in it.
    lines = table.stdout.splitlines()
    assert len(lines) == len(rows) + 1 and verdict in lines[ev["number"]]


def test_a_units_rows_during_the_event_are_the_history_rows_of_its_window(history: Path) -> None:
    end = _ended(history)
    with HistoryReader(history) as reader:
        number = next(e["number"] for e in reader.events() if e["start"] == end["start"])
    lo, hi = end["start"] - MARGIN, end["end"] + MARGIN
    # A unit the grid gave a share (one charging at full power has none to give).
    (compliance,) = raw_events(history, "compliance")
    unit = sorted(compliance["units"])[0]
    r = vpp("history", "unit", unit, "--event", str(number), "--history", str(history),
            "--csv")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = from_csv(r.stdout)
    assert rows and all(lo <= row["t"] <= hi for row in rows)
    decisions = raw_rows(history, "SELECT * FROM decisions WHERE unit = ? AND t >= ? "
                         "AND t <= ? ORDER BY t, id", (unit, lo, hi))  # fmt: skip
    telemetry = raw_rows(history, "SELECT * FROM telemetry WHERE unit = ? AND t >= ? "
                         "AND t <= ? ORDER BY t, id", (unit, lo, hi))  # fmt: skip
    got_d = [row for row in rows if row["row"] == "decision"]
    got_t = [row for row in rows if row["row"] == "telemetry"]
    assert len(got_d) == len(decisions) > 50 and len(got_t) == len(telemetry) > 5
    same = ("t", "freq_hz", "rocof_hz_s", "response_kw", "setpoint_kw", "base_kw", "band",
            "action")  # fmt: skip
    for got, want in zip(got_d, decisions, strict=True):
        assert {k: got[k] for k in same} == {k: want[k] for k in same}
        assert got["power_kw"] is None and got["soc_pct"] is None
    for got, want in zip(got_t, telemetry, strict=True):
        assert {k: got[k] for k in ("t", "power_kw", "soc_pct", "safety")} == {
            k: want[k] for k in ("t", "power_kw", "soc_pct", "safety")}  # fmt: skip
    # The unit answered: its response to the under-frequency event was a discharge.
    assert end["direction"] == "under" and max(row["response_kw"] for row in got_d) > 10.0
    # The table shows the same rows (plus its header).
    table = vpp("history", "unit", unit, "--event", str(number), "--history", str(history))
    assert len(table.stdout.splitlines()) == len(rows) + 1


def test_csv_to_a_file_parses_back_to_the_history_values(history: Path, tmp_path: Path) -> None:
    out = tmp_path / "unit.csv"
    r = vpp("history", "unit", "bess-1", "--event", "1", "--history", str(history), "--csv",
            "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    # Read with the csv module alone: the exact floats of the database come back.
    parsed = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(parsed[0]) == list(UNIT_COLUMNS)
    with HistoryReader(history) as reader:
        lo, hi = reader.event_window(1, MARGIN)
        want = reader.unit_rows("bess-1", lo, hi)
    assert len(parsed) == len(want)
    for got, row in zip(parsed, want, strict=True):
        for k in UNIT_COLUMNS:
            v = row[k]
            if v is None:
                assert got[k] == ""
            elif isinstance(v, str):
                assert got[k] == v
            else:
                assert float(got[k]) == v


def test_commands_in_a_time_range_are_the_audit_rows(history: Path) -> None:
    every = raw_rows(history, "SELECT * FROM commands ORDER BY id")
    assert len(every) >= 3
    lo, hi = every[1]["t"], every[-2]["t"]
    r = vpp("history", "commands", "--history", str(history), "--csv", "--from", repr(lo),
            "--to", repr(hi))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = from_csv(r.stdout)
    want = [c for c in every if lo <= c["t"] <= hi]
    keys = ("seq", "t", "command", "target", "identity", "ok")
    assert [[c[k] for k in keys] for c in rows] == [[c[k] for k in keys] for c in want]
    # A range in ISO 8601 (UTC, to the millisecond) selects the rows between its bounds.
    iso = [datetime.fromtimestamp(math.floor(lo * 1000) / 1000, UTC).isoformat(),
           datetime.fromtimestamp(math.ceil(hi * 1000) / 1000, UTC).isoformat()]  # fmt: skip
    b0, b1 = (datetime.fromisoformat(x).timestamp() for x in iso)
    r2 = vpp("history", "commands", "--history", str(history), "--csv", "--from", iso[0],
             "--to", iso[1])  # fmt: skip
    assert r2.returncode == 0, r2.stderr
    assert [c["seq"] for c in from_csv(r2.stdout)] == [
        c["seq"] for c in every if b0 <= c["t"] <= b1
    ]


def test_fleet_totals_are_the_sums_of_each_units_latest_telemetry(history: Path) -> None:
    with HistoryReader(history) as reader:
        lo, hi = reader.event_window(1, MARGIN)
        fleet = reader.fleet_rows(lo, hi)
    telemetry = raw_rows(history, "SELECT t, unit, power_kw FROM telemetry ORDER BY t, id")
    checked = 0
    for row in fleet[:: max(1, len(fleet) // 40)]:
        latest: dict[str, float] = {}
        for r in telemetry:
            if r["t"] <= row["t"]:
                latest[r["unit"]] = r["power_kw"]
        assert row["units"] == len(latest)
        assert row["power_kw"] == pytest.approx(sum(latest.values()), abs=1e-9)
        checked += 1
    assert checked >= 20


def _one_line_exit_2(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 2
    err = r.stderr
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_a_bad_event_number_is_one_line_and_exit_2(history: Path) -> None:
    n = len(raw_events(history, "frequency_event")) + 5
    _one_line_exit_2(vpp("history", "unit", "bess-1", "--event", str(n), "--history",
                         str(history)), f"no event {n}")  # fmt: skip
    _one_line_exit_2(vpp("report", "event", str(n), "--history", str(history)), f"no event {n}")
    _one_line_exit_2(vpp("history", "unit", "bess-9", "--event", "1", "--history",
                         str(history)), "no unit 'bess-9'")  # fmt: skip
    _one_line_exit_2(vpp("history", "commands", "--history", str(history), "--from", "yesterday"),
                     "cannot read the time")  # fmt: skip


def test_no_history_and_an_empty_history_are_one_line_and_exit_2(tmp_path: Path) -> None:
    _one_line_exit_2(vpp("history", "events", "--history", str(tmp_path / "none.db")),
                     "no history file")  # fmt: skip
    empty = tmp_path / "empty.db"
    History(empty).close()  # the tables of a real history, no rows
    _one_line_exit_2(vpp("history", "events", "--history", str(empty)), "empty")
    _one_line_exit_2(vpp("report", "event", "1", "--history", str(empty)), "empty")
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE x (a)")
    db.close()
    _one_line_exit_2(vpp("history", "events", "--history", str(other)), "not a vpp history")


def test_the_reader_never_writes(history: Path) -> None:
    before = history.stat().st_mtime_ns, history.read_bytes()
    with HistoryReader(history) as reader, pytest.raises(sqlite3.OperationalError):
        reader._db.execute("DELETE FROM telemetry")  # read-only connection
    assert (history.stat().st_mtime_ns, history.read_bytes()) == before
