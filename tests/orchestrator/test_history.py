"""The SQLite history: rows written in batches, read back, bounded buffer."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from vpp.orchestrator.history import TABLES, History


def test_rows_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    h = History(path)
    h.add("telemetry", {"t": 10.0, "unit": "bess1", "power_kw": -12.5, "soc_pct": 55.0})
    h.add("commands", {"t": 11.0, "target": "bess1", "command": "set_power",
                       "params": {"kw": 5}, "issued_by": "operator:alice", "ok": True})
    assert h.count("telemetry") == 0  # buffered until flushed
    assert h.flush() == 2
    h.close()
    # A second reader sees exactly what was written, types preserved.
    db = sqlite3.connect(path)
    assert db.execute("SELECT unit, power_kw, soc_pct FROM telemetry").fetchall() == [
        ("bess1", -12.5, 55.0)
    ]
    db.close()
    h2 = History(path)
    (cmd,) = h2.rows("commands")
    assert cmd["issued_by"] == "operator:alice" and cmd["ok"] == 1
    assert cmd["params"] == '{"kw": 5}'
    h2.close()


def test_filters_since_and_where() -> None:
    h = History(":memory:")
    for i in range(10):
        h.add("decisions", {"t": float(i), "unit": f"u{i % 2}", "setpoint_kw": i * 1.0})
    h.flush()
    assert [r["t"] for r in h.rows("decisions", since=7.0)] == [7.0, 8.0, 9.0]
    assert [r["setpoint_kw"] for r in h.rows("decisions", where={"unit": "u1"}, limit=2)] == [
        1.0, 3.0
    ]
    with pytest.raises(KeyError, match="no column 'nope'"):
        h.rows("decisions", where={"nope": 1})
    h.close()


def test_missing_time_defaults_to_now_and_every_table_exists() -> None:
    h = History(":memory:")
    for table in TABLES:
        h.add(table, {})
    assert h.flush() == len(TABLES)
    for table in TABLES:
        (row,) = h.rows(table)
        assert row["t"] > 1.7e9
    h.close()


def test_full_buffer_drops_and_counts() -> None:
    h = History(":memory:", max_buffer=5)
    for i in range(8):
        h.add("events", {"t": float(i), "kind": "x"})
    assert h.dropped == 3
    assert h.flush() == 5
    h.close()


def test_flush_from_a_thread_while_adding() -> None:
    h = History(":memory:")
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            h.flush()

    th = threading.Thread(target=flusher)
    th.start()
    for i in range(20_000):
        h.add("telemetry", {"t": float(i), "unit": "u"})
    stop.set()
    th.join()
    h.flush()
    assert h.count("telemetry") == 20_000
    h.close()
