"""The site's history in an embedded SQLite database.

Telemetry, control decisions, commands (with who sent them and how they ended), events,
market bids and their results are appended as rows. Rows are buffered in memory and
written in one transaction per :meth:`History.flush`, because a commit per row would
cost a disk sync per PMU frame; the database runs in WAL mode so that a reader
(sqlite3, a test) never blocks the writer. All times are UNIX seconds.

One bad row never costs a batch (issue 8: a NaN timestamp failed ``t REAL NOT NULL``,
hence every flush of the run). :meth:`History.add` sanitises: a ``t`` that is not a
finite number becomes the time of recording (counted in ``fixed_times``), and a
non-finite number in any other column is stored as NULL (counted in ``null_values``):
SQLite itself turns NaN into NULL, and NULL is what every reader already takes for "no
value", where an infinity or a ``"nan"`` text would poison sums and comparisons. Should
a batched insert still fail on a row (an integer past 64 bits, a string that is not
valid Unicode), :meth:`History.flush` writes that table's rows one by one and skips only
those that fail, counted in ``bad_rows`` and logged once per table and kind of error. A failure
of the database itself (locked, disk full) is no bad row: the batch is kept for the next
flush and the error raised.

The ``commands`` table is the audit: each row carries who sent the command (``identity``,
authenticated by the bus, and ``role``), which server handled it (``server``), how it
ended (``ok``, ``refused``, ``detail``), and a place in an HMAC chain (``seq``, ``mac``)
computed at flush time; :mod:`vpp.orchestrator.audit` says how and why. A database
written before the chain keeps its old table as ``commands_unchained``.

Every file the history creates is private: the database (and with it SQLite's -wal and
-shm, which take the database's mode), the audit key and anchor are made 0600, any
missing directory above them 0700 (:mod:`vpp.orchestrator.private_files`).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vpp.orchestrator import audit
from vpp.orchestrator.private_files import create_private, private_dirs
from vpp.validation import finite_or_none

__all__ = ["TABLES", "History"]

log = logging.getLogger(__name__)

#: Columns of every table, in order (``t`` is always first).
TABLES: dict[str, tuple[str, ...]] = {
    "telemetry": (
        "t", "unit", "power_kw", "reactive_kvar", "soc_pct", "temp_c", "safety", "online"
    ),
    "decisions": (
        "t", "unit", "freq_hz", "rocof_hz_s", "band", "response_kw", "base_kw", "setpoint_kw",
        "action",
    ),
    "commands": (*audit.COLUMNS, "seq", "mac"),
    "events": ("t", "source", "kind", "severity", "text"),
    "bids": ("t", "bid_id", "product", "delivery", "block", "side", "volume_mw", "price"),
    "results": ("t", "bid_id", "block", "accepted_mw", "clearing_price"),
}

#: The columns a caller gives, per table: ``seq`` and ``mac`` are the chain's.
_INPUT = {table: columns[: len(audit.COLUMNS)] if table == "commands" else columns
          for table, columns in TABLES.items()}  # fmt: skip

_TYPES = {
    "t": "REAL NOT NULL",
    "online": "INTEGER",
    "ok": "INTEGER",
    "block": "INTEGER",
    "seq": "INTEGER",
}
_TEXT = {
    "unit", "safety", "band", "action", "server", "target", "command", "params", "identity",
    "role", "refused", "detail", "source", "kind", "severity", "text", "bid_id", "product",
    "delivery", "side", "mac",
}


#: What a single row can make an INSERT raise (the row, not the database, is at fault):
#: a constraint, a value that cannot be bound (an int past 64 bits: OverflowError; a str
#: with a lone surrogate: UnicodeEncodeError, a ValueError; a blob too big: DataError).
#: OperationalError (locked, disk full, I/O) is the database's and is not among them.
_ROW_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    OverflowError,
    ValueError,
)


def _ddl(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(
        f"{c} {_TYPES.get(c, 'TEXT' if c in _TEXT else 'REAL')}" for c in columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, {cols})"


class History:
    """An append-mostly store of what happened at the site (see the module docstring).

    ``path`` may be ``":memory:"``. Thread-safe: the recorder may flush from a worker
    thread while the event loop keeps appending. ``busy_timeout_s`` is how long a write
    waits for another writer of the same file before failing with "database is locked".
    ``audit_key`` is the file of the audit chain's key (default ``<path>.audit-key``;
    created when missing; an in-memory history without one uses a key of its own).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_buffer: int = 100_000,
        busy_timeout_s: float = 5.0,
        audit_key: str | Path | None = None,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            private_dirs(Path(self.path).parent)
            # Made 0600 before SQLite opens it: SQLite would create it with 0644, and gives
            # its -wal and -shm files the database's mode.
            create_private(Path(self.path))
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
        )
        # Two locks: appending only waits for the buffer swap, never for a disk write.
        self._lock = threading.Lock()
        self._buf_lock = threading.Lock()
        self._pending: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self._max_buffer = max_buffer
        self._buffered = 0
        #: Rows dropped because the buffer was full (the disk cannot keep up).
        self.dropped = 0
        self.written = 0
        #: Rows whose ``t`` was not a finite number, recorded at the time of recording.
        self.fixed_times = 0
        #: Non-finite numbers (NaN, infinities) of other columns stored as NULL.
        self.null_values = 0
        #: Rows the database refused (skipped at flush; the rest of the batch written).
        self.bad_rows = 0
        self._logged: set[tuple[str, str]] = set()
        #: Anchor files that could not be written (the next flush that adds commands
        #: tries again; meanwhile a deletion of the newest rows would go unseen).
        self.anchor_errors = 0
        with self._lock:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                _retire_unchained(self._db)
                for table, columns in TABLES.items():
                    self._db.execute(_ddl(table, columns))
                    self._db.execute(f"CREATE INDEX IF NOT EXISTS {table}_t ON {table}(t)")
                self._chain, notes = audit.Chain.open(self._db, self.path, audit_key)
            except BaseException:
                self._db.close()  # e.g. an unreadable audit key: no history, no open file
                raise
        for note in notes:
            # Kept in the history too: whoever reads it later must see it, not only the
            # log of this run.
            log.error("history %s: %s", self.path, note)
            self.add("events", {"source": "history", "kind": "audit", "severity": "alarm",
                                "text": note})  # fmt: skip

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        """Buffer one row; missing columns are NULL, ``t`` defaults to now. A ``t`` that
        is not a finite number is replaced by now, a non-finite number elsewhere by NULL
        (both counted). A full buffer drops the row and counts it rather than growing
        without bound."""
        columns = _INPUT[table]
        t = row.get("t")
        if t is not None:
            t = finite_or_none(t)
            if t is None:
                self.fixed_times += 1
        values = (time.time() if t is None else t, *(self._cell(row.get(c)) for c in columns[1:]))
        if table == "commands":
            # Stored exactly as MAC'd (SQLite would turn a number in a TEXT column to text).
            values = audit.canonical_row(values)
        with self._buf_lock:
            if self._buffered >= self._max_buffer:
                self.dropped += 1
                return
            self._buffered += 1
            self._pending[table].append(values)

    def _cell(self, value: Any) -> Any:
        """:func:`_json_cell`, with a non-finite float as NULL (counted)."""
        if isinstance(value, float) and not math.isfinite(value):
            self.null_values += 1
            return None
        return _json_cell(value)

    def flush(self) -> int:
        """Write every buffered row in one transaction; returns how many.

        A row the database refuses is skipped and counted (``bad_rows``), the rest of its
        batch written. When the database itself fails (locked, disk full), nothing is
        written, the rows are kept for the next flush (as far as the buffer bound allows)
        and the error is raised.
        """
        with self._lock:
            with self._buf_lock:
                pending, self._pending = self._pending, {t: [] for t in TABLES}
                self._buffered = 0
            n = bad = 0
            # The chain's head moves only once the rows are committed (audit's docstring).
            head = self._chain.head
            try:
                self._db.execute("BEGIN")
                for table, rows in pending.items():
                    if not rows:
                        continue
                    if table == "commands":
                        written, head = self._insert_chained(rows, head)
                    else:
                        written = self._insert(table, rows)
                    n += written
                    bad += len(rows) - written
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._keep(pending)
                raise
            self.written += n
            self.bad_rows += bad
            try:
                self._chain.advance(head)
            except OSError as exc:
                # The rows are safe; only the anchor lags. Not raised, which would make
                # the caller take the written rows for lost.
                self.anchor_errors += 1
                if self.anchor_errors == 1:
                    log.error("history: cannot write the audit anchor (%s); further "
                              "failures are only counted", exc)  # fmt: skip
            return n

    @staticmethod
    def _sql(table: str) -> str:
        cols = TABLES[table]
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> int:
        """Insert ``rows`` into ``table`` (inside the flush's transaction); how many."""
        sql = self._sql(table)
        if self._insert_all(sql, rows):
            return len(rows)
        # Some row cannot be stored: one by one, skipping only the rows that fail.
        return sum(self._insert_one(table, sql, row) for row in rows)

    def _insert_chained(
        self, rows: list[tuple[Any, ...]], head: audit.Head
    ) -> tuple[int, audit.Head]:
        """Insert ``rows`` into ``commands``, each linked to the one before, from
        ``head``; how many, and the new head."""
        sql = self._sql("commands")
        linked, h = [], head
        for row in rows:
            h = self._chain.next(h, row)
            linked.append((*row, h.seq, h.mac.hex()))
        if self._insert_all(sql, linked):
            return len(rows), h
        # One by one, and a row takes its seq only once it is stored: a refused row
        # leaves no gap, and the rows after it are linked again to the one before it.
        n, h = 0, head
        for row in rows:
            nxt = self._chain.next(h, row)
            if self._insert_one("commands", sql, (*row, nxt.seq, nxt.mac.hex())):
                n, h = n + 1, nxt
        return n, h

    def _insert_all(self, sql: str, rows: list[tuple[Any, ...]]) -> bool:
        """Insert every row or none (False when some row cannot be stored)."""
        # A savepoint, because executemany leaves the rows before a failing one inserted.
        self._db.execute("SAVEPOINT batch")
        try:
            self._db.executemany(sql, rows)
        except _ROW_ERRORS:
            self._db.execute("ROLLBACK TO batch")
            self._db.execute("RELEASE batch")
            return False
        self._db.execute("RELEASE batch")
        return True

    def _insert_one(self, table: str, sql: str, row: tuple[Any, ...]) -> bool:
        """Insert one row; False (logged, counted by the caller) when it is refused (a
        single INSERT is atomic, so a failed one leaves nothing behind)."""
        try:
            self._db.execute(sql, row)
        except _ROW_ERRORS as exc:
            self._bad_row(table, exc)
            return False
        return True

    def _bad_row(self, table: str, exc: Exception) -> None:
        # Once per table and kind of error (its message may vary with the value): a sender
        # that keeps sending the same bad value must not flood the log; ``bad_rows``
        # keeps the count.
        key = (table, type(exc).__name__)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("history: skipped a %s row the database refused (%s: %s); further "
                        "ones for the same reason are only counted", table,
                        type(exc).__name__, exc)  # fmt: skip

    def _keep(self, pending: dict[str, list[tuple[Any, ...]]]) -> None:
        """Put the rows of a failed flush back, before those added since, within the
        buffer bound (the excess is dropped and counted)."""
        with self._buf_lock:
            for table, rows in pending.items():
                room = max(0, self._max_buffer - self._buffered)
                if len(rows) > room:
                    self.dropped += len(rows) - room
                    rows = rows[:room]
                self._pending[table][:0] = rows
                self._buffered += len(rows)

    def rows(
        self,
        table: str,
        *,
        since: float | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``table`` (oldest first) as dicts, optionally from time ``since`` and
        with columns equal to the values in ``where``."""
        columns = TABLES[table]
        clauses, args = [], []
        if since is not None:
            clauses.append("t >= ?")
            args.append(since)
        for key, value in (where or {}).items():
            if key not in columns:
                raise KeyError(f"table {table!r} has no column {key!r}")
            clauses.append(f"{key} = ?")
            args.append(_json_cell(value))
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            cur = self._db.execute(sql, args)
            return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]

    def count(self, table: str) -> int:
        """Rows written to ``table`` so far."""
        with self._lock:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(n)

    def close(self) -> None:
        """Flush what is buffered and close the database (closed even when the flush
        fails, whose error is then raised)."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._db.close()

    @contextmanager
    def session(self) -> Iterator[History]:
        """``with history.session():`` closes (and flushes) at the end."""
        try:
            yield self
        finally:
            self.close()


def _retire_unchained(db: sqlite3.Connection) -> None:
    """Rename a ``commands`` table written before the audit chain (no ``mac`` column) to
    ``commands_unchained``, so the chained table starts empty and the old rows are kept,
    for what they are worth: nothing vouches for them."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(commands)")}
    if not columns or "mac" in columns:
        return
    name, n = "commands_unchained", 1
    while db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone():
        n += 1
        name = f"commands_unchained_{n}"
    db.execute(f"ALTER TABLE commands RENAME TO {name}")
    # Its index went with it under the old name, which the new table's index needs.
    db.execute("DROP INDEX IF EXISTS commands_t")
    log.warning("history: the commands table predates the audit chain; kept as %s", name)


def _json_cell(value: Any) -> Any:
    """A value SQLite stores as is; mappings and lists become JSON text (in which Python's
    json writes a non-finite number as ``NaN`` / ``Infinity``: kept as text)."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
