"""The SQLite history: rows written in batches, read back, bounded buffer."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.orchestrator.audit_tampering import command, make_history, opened
from vpp.errors import ConfigError
from vpp.orchestrator import audit
from vpp.orchestrator.history import TABLES, History


def test_rows_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    h = History(path)
    h.add("telemetry", {"t": 10.0, "unit": "bess1", "power_kw": -12.5, "soc_pct": 55.0})
    h.add("commands", {"t": 11.0, "target": "bess1", "command": "set_power",
                       "params": {"kw": 5}, "identity": "operator:alice", "ok": True})
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
    assert cmd["identity"] == "operator:alice" and cmd["ok"] == 1 and cmd["seq"] == 1
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


# ---- bad rows (issue 8): one bad row never costs the batch, nor the writer ----


def test_a_non_finite_time_is_replaced_by_the_time_of_recording_and_counted() -> None:
    # SQLite binds NaN as NULL: ``t REAL NOT NULL`` then failed the whole transaction, and
    # every later flush of the run with it (the launcher's flush task died).
    h = History(":memory:")
    before = time.time()
    for t in (math.nan, math.inf, -math.inf, "soon", 5.0):
        h.add("telemetry", {"t": t, "unit": "u", "power_kw": 1.0})
    assert h.flush() == 5
    times = [r["t"] for r in h.rows("telemetry")]
    assert all(before <= t <= time.time() for t in times[:4]) and times[4] == 5.0
    assert h.fixed_times == 4 and h.bad_rows == 0
    h.add("telemetry", {"t": 6.0, "unit": "u"})
    assert h.flush() == 1  # the writer goes on
    h.close()


def test_non_finite_numbers_in_other_columns_are_stored_as_null_and_counted() -> None:
    h = History(":memory:")
    h.add("telemetry", {"t": 1.0, "unit": "u", "power_kw": math.inf, "soc_pct": math.nan,
                        "temp_c": -math.inf, "reactive_kvar": 2.5})  # fmt: skip
    assert h.flush() == 1
    (row,) = h.rows("telemetry")
    assert (row["power_kw"], row["soc_pct"], row["temp_c"], row["reactive_kvar"]) == (
        None, None, None, 2.5)  # fmt: skip
    assert h.null_values == 3
    h.close()


def test_a_row_that_cannot_be_stored_is_skipped_and_the_rest_of_the_batch_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = History(":memory:")
    h.add("events", {"t": 1.0, "kind": "a"})
    # An integer past SQLite's 64 bits, a lone surrogate: both fail the insert itself.
    h.add("bids", {"t": 2.0, "bid_id": "b1", "block": 2**70})
    h.add("bids", {"t": 3.0, "bid_id": "b2", "block": 7})
    h.add("events", {"t": 4.0, "kind": "b", "text": "bad \ud800"})
    h.add("events", {"t": 5.0, "kind": "c"})
    h.add("bids", {"t": 6.0, "bid_id": "b3", "block": 2**80})
    with caplog.at_level(logging.WARNING, logger="vpp.orchestrator.history"):
        assert h.flush() == 3
    assert [r["kind"] for r in h.rows("events")] == ["a", "c"]
    assert [r["bid_id"] for r in h.rows("bids")] == ["b2"]
    assert h.bad_rows == 3 and h.written == 3
    # Logged once per table and reason, naming both.
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2, logged
    assert any("bids" in m and "too large" in m for m in logged)
    assert any("events" in m and "surrogates" in m for m in logged)
    h.add("bids", {"t": 7.0, "bid_id": "b4", "block": 2**90})
    with caplog.at_level(logging.WARNING, logger="vpp.orchestrator.history"):
        assert h.flush() == 0
    assert h.bad_rows == 4 and len(caplog.records) == 2  # the same reason: not again
    h.close()


def test_a_database_error_keeps_the_batch_for_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = History(path, busy_timeout_s=0.05)
    h.add("events", {"t": 1.0, "kind": "a"})
    h.add("events", {"t": 2.0, "kind": "b"})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            h.flush()
        h.add("events", {"t": 3.0, "kind": "c"})
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Not a bad row: nothing skipped, and the next flush writes the kept rows, in order.
    assert h.bad_rows == 0
    assert h.flush() == 3
    assert [r["kind"] for r in h.rows("events")] == ["a", "b", "c"]
    h.close()


def test_kept_rows_still_respect_the_buffer_bound(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = History(path, busy_timeout_s=0.05, max_buffer=3)
    for i in range(3):
        h.add("events", {"t": float(i), "kind": "old"})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            h.flush()
    finally:
        other.execute("ROLLBACK")
        other.close()
    h.add("events", {"t": 9.0, "kind": "new"})  # the buffer is full of the kept rows
    assert h.dropped == 1
    assert h.flush() == 3
    h.close()


# ---- the audit chain of commands (issue 9) ----


def _seqs(h: History) -> list[int]:
    return [r["seq"] for r in h.rows("commands")]


def test_commands_are_chained_across_flushes_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = History(path)
    for i in range(3):
        h.add("commands", command(i))
    h.add("events", {"kind": "x"})  # other tables take no part in the chain
    assert h.flush() == 4
    for i in range(3, 5):
        h.add("commands", command(i))
    h.flush()
    h.close()
    h = History(path)  # a restart continues from the last row
    h.add("commands", command(5))
    h.flush()
    assert _seqs(h) == [1, 2, 3, 4, 5, 6]
    assert all(len(r["mac"]) == 64 for r in h.rows("commands"))
    h.close()
    assert audit.verify(path).ok and audit.verify(path).rows == 6


def test_a_refused_command_row_takes_no_seq(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = History(path)
    h.add("commands", command(1))
    h.add("commands", {**command(2), "detail": "bad \ud800"})  # SQLite refuses it
    h.add("commands", command(3))
    assert h.flush() == 2 and h.bad_rows == 1
    h.add("commands", {**command(4), "params": {"big": 2**70}})  # as JSON text: stored
    h.add("commands", {**command(5), "role": "\udfff"})
    assert h.flush() == 1 and h.bad_rows == 2
    assert _seqs(h) == [1, 2, 3]
    assert [r["t"] for r in h.rows("commands")] == [1001.0, 1003.0, 1004.0]
    h.close()
    assert audit.verify(path).ok


def test_a_failed_flush_leaves_the_chain_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = History(path, busy_timeout_s=0.05)
    h.add("commands", command(1))
    h.flush()
    h.add("commands", command(2))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            h.flush()
        h.add("commands", command(3))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert h.flush() == 2
    assert _seqs(h) == [1, 2, 3]
    h.close()
    assert audit.verify(path).ok


def test_commands_flushed_from_a_thread_while_adding_stay_chained(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = History(path)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            h.flush()

    th = threading.Thread(target=flusher)
    th.start()
    for i in range(3000):
        h.add("commands", command(i))
    stop.set()
    th.join()
    h.close()
    result = audit.verify(path)
    assert result.ok and result.rows == 3000, str(result)


def test_an_in_memory_history_is_chained_too() -> None:
    h = History(":memory:")
    for i in range(3):
        h.add("commands", command(i))
    h.flush()
    assert _seqs(h) == [1, 2, 3]
    h.close()


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_every_file_and_directory_the_history_makes_is_private(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "a" / "b" / "h.db"
    old = os.umask(umask)  # even a umask that lets everyone in
    try:
        h = History(path)
        h.add("commands", command(1))
        h.flush()
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), audit.default_key_path(path),
                 audit.anchor_path(path)]  # fmt: skip
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        h.add("commands", command(2))
        h.flush()  # the anchor is replaced: still private
        assert mode(audit.anchor_path(path)) == 0o600
        h.close()
    finally:
        os.umask(old)
    assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b")) == (0o700, 0o700)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_commands_table_from_before_the_chain_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE commands (id INTEGER PRIMARY KEY, t REAL NOT NULL, target TEXT, "
               "command TEXT, params TEXT, issued_by TEXT, ok INTEGER, detail TEXT)")
    db.execute("CREATE INDEX commands_t ON commands(t)")
    db.execute("INSERT INTO commands (t, command, issued_by) VALUES (1.0, 'old', 'someone')")
    db.commit()
    db.close()
    h = History(path)
    h.add("commands", command(1))
    h.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT command, issued_by FROM commands_unchained").fetchall() == [
            ("old", "someone")]  # fmt: skip
        assert db.execute("SELECT seq, command FROM commands").fetchall() == [(1, "set_base")]
    finally:
        db.close()
    assert audit.verify(path).ok


def test_rows_deleted_while_no_writer_ran_stay_a_visible_gap(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    make_history(path, 4)
    with opened(path) as db:
        db.execute("DELETE FROM commands WHERE seq >= 3")
    h = History(path)  # the anchor is ahead: the chain goes on from it, not from seq 2
    h.add("commands", command(5))
    h.flush()
    assert _seqs(h) == [1, 2, 5]
    (note,) = h.rows("events", where={"kind": "audit"})
    assert note["severity"] == "alarm" and "after seq 2 up to 4 were deleted" in note["text"]
    h.close()
    problem = audit.verify(path).problem
    assert problem is not None and (problem.kind, problem.seq) == ("deleted", 3)


def test_an_anchor_that_does_not_verify_is_kept_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    make_history(path, 2)
    anchor = audit.anchor_path(path)
    anchor.write_text(anchor.read_text().replace('"seq": 2', '"seq": 1'))
    h = History(path)
    h.flush()
    (note,) = h.rows("events", where={"kind": "audit"})
    h.close()
    assert note["severity"] == "alarm" and "was edited" in note["text"]
    assert anchor.with_name(anchor.name + ".rejected").exists()
    assert audit.verify(path).ok  # a fresh anchor for the intact chain


def test_a_key_others_may_read_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    History(path).close()
    audit.default_key_path(path).chmod(0o644)
    h = History(path)
    h.flush()
    (note,) = h.rows("events", where={"kind": "audit"})
    h.close()
    assert "may be read by other users (mode 644)" in note["text"]


def test_an_unreadable_key_opens_no_history(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    audit.default_key_path(path).write_text("not a key")
    with pytest.raises(ConfigError, match="cannot read audit key"):
        History(path)
    key = tmp_path / "new" / "dir" / "k"  # a configured key in a missing directory
    History(path, audit_key=key).close()
    assert mode(key.parent) == 0o700 and mode(key) == 0o600


def test_a_history_tampered_with_odd_values_still_opens(tmp_path: Path) -> None:
    # Whoever can edit the database must not be able to stop the site from starting.
    path = tmp_path / "h.db"
    make_history(path, 3)
    with opened(path) as db:
        db.execute("UPDATE commands SET seq = 'x', mac = 42 WHERE seq = 3")
        db.execute("UPDATE commands SET mac = 'zz' WHERE seq = 2")
    audit.anchor_path(path).write_bytes(b"\xff[]")
    h = History(path)
    h.add("commands", command(9))
    h.close()
    problem = audit.verify(path).problem
    assert problem is not None and (problem.kind, problem.seq) == ("edited", 2)
