"""The tamper-evident audit of commands: an HMAC chain over the history's ``commands`` table.

Every command a server handled, accepted or refused, is a row of ``commands``
(:mod:`vpp.orchestrator.recorder`). Each row also holds ``seq`` (1, 2, 3, ... without a
gap, in insertion order) and ``mac``::

    mac[n] = HMAC-SHA256(key, mac[n-1] || canonical(seq, t, server, target, command,
                                                    params, identity, role, ok, refused,
                                                    detail))

``mac[0]`` is 32 zero bytes and ``canonical`` a JSON array (ASCII, no spaces; ``params``
is the JSON text stored, keys sorted). Editing a row changes its MAC; deleting,
inserting or moving one breaks the run of ``seq`` and the link to the previous MAC; none
of it can be repaired without the key.

**Why a key.** A plain hash chain (SHA-256 of the previous hash and the row) proves
nothing against whoever can edit the database: they recompute every hash after their
edit and the chain verifies again. The HMAC key is a secret in a file of its own (mode
0600; ``<db>.audit-key`` unless ``history.audit_key`` puts it where the database's
editors cannot read it), so a forger needs the key as well as the database.

**The tail.** Deleting the last rows leaves a chain that is intact, only shorter. So the
writer keeps an anchor, ``<db>.audit-head`` (0600): the last ``seq`` and ``mac``, a check
value of the key and a MAC over them, rewritten after each flush that added rows. The
anchor is written after the commit, so it may lag the table (a crash between the two)
but does not run ahead of it; only a power loss that undoes the last commit (the
database runs with ``synchronous=NORMAL``) can leave it ahead, which verify reports as a
missing tail: a false alarm rather than a silent loss.

**Where the chain is computed.** At flush time, inside the flush's transaction and in
insertion order (:meth:`vpp.orchestrator.history.History.flush` drives :class:`Chain`
under its write lock). A row the database refuses is skipped before it takes a seq, so
it leaves no gap; a flush that fails as a whole rolls back, and the head of the chain
with it (the head moves only after the commit), so the retried rows take the same seqs.
Reopening a database continues from its last row, or from the anchor when the anchor is
ahead (rows deleted while no writer ran): the new rows then chain onto the anchor and
the gap stays visible instead of being papered over.

:func:`verify` (``vpp audit verify``) walks the table in insertion order and returns a
:class:`Verification`: OK with the row count, or the first bad seq and why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from vpp.orchestrator.private_files import create_private, private_dirs, write_private
from vpp.validation import config_error

__all__ = [
    "COLUMNS",
    "Anchor",
    "Chain",
    "Head",
    "Problem",
    "ProblemKind",
    "Verification",
    "anchor_path",
    "canonical_row",
    "default_key_path",
    "load_key",
    "read_anchor",
    "verify",
]

#: The audited columns of a ``commands`` row, in MAC order (``seq`` and ``mac`` follow).
COLUMNS = (
    "t", "server", "target", "command", "params", "identity", "role", "ok", "refused",
    "detail",
)  # fmt: skip
_TEXT = frozenset(COLUMNS) - {"t", "ok"}
_VERSION = "vpp-audit/1"
#: The "previous MAC" of the first row.
GENESIS = bytes(32)
_KEY_BYTES = 32

ProblemKind = Literal[
    "edited", "inserted", "deleted", "reordered", "missing_tail", "wrong_key", "anchor"
]


@dataclasses.dataclass(frozen=True)
class Head:
    """The last link of a chain: its ``seq`` (0 for an empty chain) and ``mac``."""

    seq: int
    mac: bytes


EMPTY = Head(0, GENESIS)


def default_key_path(db_path: str | Path) -> Path:
    """Where the audit key of history ``db_path`` is kept unless configured elsewhere."""
    return Path(f"{db_path}.audit-key")


def anchor_path(db_path: str | Path) -> Path:
    """The anchor file of history ``db_path``."""
    return Path(f"{db_path}.audit-head")


def load_key(path: str | Path, *, create: bool = False) -> tuple[bytes, bool]:
    """The key in ``path`` (64 hex digits) and whether it was created now: with
    ``create``, a missing file is made (mode 0600) holding a new random key. A missing
    (without ``create``), unreadable or malformed file raises ConfigError."""
    p = Path(path)
    if create:
        private_dirs(p.parent)
    created = create and create_private(p, secrets.token_hex(_KEY_BYTES).encode() + b"\n")
    try:
        text = p.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        raise config_error(f"no audit key {p}", "history.audit_key") from None
    except (OSError, ValueError) as exc:
        raise config_error(f"cannot read audit key {p}: {exc}", "history.audit_key") from None
    if len(key) != _KEY_BYTES:
        raise config_error(f"{p} is not an audit key (64 hex digits)", "history.audit_key")
    return key, created


def canonical_row(values: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` (one per :data:`COLUMNS`) as exactly the types SQLite gives back.

    The MAC is computed before the row is stored and checked on what is read back, so
    nothing may change on the way: ``t`` REAL turns an int into a float and -0.0 into
    0.0, and a TEXT column an int or a float into text in SQLite's own format; hence
    everything is converted here, text columns through JSON.
    """
    out: list[Any] = []
    for col, v in zip(COLUMNS, values, strict=True):
        if v is None:
            out.append(None)
        elif col == "t":
            # + 0.0: SQLite stores an integral REAL as an integer, so -0.0 comes back 0.0.
            out.append(float(v) + 0.0)
        elif col == "ok":
            out.append(None if isinstance(v, str) else int(bool(v)))
        else:
            out.append(v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str))
    return tuple(out)


def _mac(key: bytes, prev: bytes, seq: int, row: Sequence[Any]) -> bytes:
    # prev is always 32 bytes, so the concatenation is unambiguous. Raises TypeError or
    # ValueError on a value the history never writes (a BLOB, an infinity).
    payload = json.dumps([_VERSION, seq, *row], ensure_ascii=True, separators=(",", ":"),
                         allow_nan=False)  # fmt: skip
    return hmac.new(key, prev + payload.encode("ascii"), hashlib.sha256).digest()


def _key_check(key: bytes) -> str:
    """A value that tells a wrong key from an edited anchor, and reveals nothing of it."""
    return hmac.new(key, f"{_VERSION} key check".encode(), hashlib.sha256).hexdigest()


def _anchor_mac(key: bytes, head: Head) -> str:
    msg = f"{_VERSION} anchor {head.seq}".encode() + head.mac
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class Anchor:
    """An anchor file as read: the head it names, whether it was written with this key
    (``key_ok``) and whether its MAC holds (``intact``; false too when malformed)."""

    head: Head
    key_ok: bool
    intact: bool


def read_anchor(path: Path, key: bytes) -> Anchor | None:
    """The anchor in ``path`` checked with ``key``; None when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        head = Head(int(doc["seq"]), bytes.fromhex(doc["mac"]))
        key_ok = hmac.compare_digest(str(doc["key_check"]), _key_check(key))
        intact = key_ok and hmac.compare_digest(str(doc["anchor_mac"]), _anchor_mac(key, head))
    except (ValueError, TypeError, KeyError):
        return Anchor(EMPTY, key_ok=True, intact=False)
    return Anchor(head, key_ok=key_ok, intact=intact)


def _write_anchor(path: Path, key: bytes, head: Head) -> None:
    doc = {"v": 1, "seq": head.seq, "mac": head.mac.hex(), "key_check": _key_check(key),
           "anchor_mac": _anchor_mac(key, head)}  # fmt: skip
    write_private(path, json.dumps(doc).encode() + b"\n")


def _unhex(mac: Any) -> bytes:
    try:
        b = bytes.fromhex(mac) if isinstance(mac, str) else b""
    except ValueError:
        b = b""
    # A stored MAC that is not one was edited; whatever follows it is chained onto a
    # fixed value and verify reports the edit at that row.
    return b if len(b) == len(GENESIS) else GENESIS


class Chain:
    """The writing end of one history's chain: its key, its head and its anchor file
    (None for an in-memory history). Not locked on its own: History drives it under its
    write lock."""

    def __init__(self, key: bytes, head: Head, anchor: Path | None) -> None:
        self.key = key
        self.head = head
        self.anchor = anchor

    @classmethod
    def open(
        cls, db: sqlite3.Connection, db_path: str, key_path: str | Path | None
    ) -> tuple[Chain, list[str]]:
        """The chain of the ``commands`` table of ``db`` (which must exist), and what is
        wrong with it (each a sentence, for the log and the events table)."""
        notes: list[str] = []
        # Only integer seqs: a seq edited into text must not stop the site from starting.
        row = db.execute("SELECT seq, mac FROM commands WHERE typeof(seq) = 'integer' "
                         "ORDER BY seq DESC LIMIT 1").fetchone()  # fmt: skip
        head = EMPTY if row is None else Head(int(row[0]), _unhex(row[1]))
        if db_path == ":memory:" and key_path is None:
            # Nothing outlives the process, so nothing needs verifying later.
            return cls(secrets.token_bytes(_KEY_BYTES), head, None), notes
        key_file = Path(key_path or default_key_path(db_path))
        key, created = load_key(key_file, create=True)
        if key_file.stat().st_mode & 0o077:
            notes.append(f"audit: the key {key_file} may be read by other users (mode "
                         f"{key_file.stat().st_mode & 0o777:o}); whoever reads it can "
                         "forge the audit: chmod 600 it")  # fmt: skip
        if created and head.seq:
            notes.append(f"audit: a new key was created for a history that holds {head.seq} "
                         "chained commands; the earlier ones cannot be verified with it")
        if db_path == ":memory:":
            return cls(key, head, None), notes
        path = anchor_path(db_path)
        anchor = read_anchor(path, key)
        if anchor is None:
            if head.seq:
                notes.append(f"audit: the anchor {path} is missing; a deletion of the last "
                             "commands before now cannot be detected")
        elif not anchor.intact:
            kept = path.with_name(path.name + ".rejected")
            path.replace(kept)
            why = "written with another key" if not anchor.key_ok else "edited"
            notes.append(f"audit: the anchor {path} was {why}; kept as {kept}")
        elif anchor.head.seq > head.seq:
            notes.append(f"audit: the commands after seq {head.seq} up to {anchor.head.seq} "
                         "were deleted; the chain goes on from the anchor, so verify shows "
                         "the gap")  # fmt: skip
            head = anchor.head
        chain = cls(key, head, path)
        _write_anchor(path, key, head)
        return chain, notes

    def next(self, prev: Head, row: Sequence[Any]) -> Head:
        """The link after ``prev`` for ``row`` (a :func:`canonical_row`)."""
        seq = prev.seq + 1
        return Head(seq, _mac(self.key, prev.mac, seq, row))

    def advance(self, head: Head) -> None:
        """Make ``head`` (committed) the chain's head and write the anchor when it moved
        (OSError is raised after the head moved: the anchor is then written next time)."""
        if head == self.head:
            return
        self.head = head
        if self.anchor is not None:
            _write_anchor(self.anchor, self.key, head)


# ---- verification ----


@dataclasses.dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain: its kind, the first seq that cannot be
    trusted and a sentence."""

    kind: ProblemKind
    seq: int
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind.replace('_', ' ')}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: ``rows`` in the table, ``verified`` of them before the
    first problem (all when OK), the anchor's seq (None without one) and the problem."""

    rows: int
    verified: int
    anchor_seq: int | None
    problem: Problem | None

    @property
    def ok(self) -> bool:
        """Whether the chain, the anchor and the key all hold."""
        return self.problem is None

    def __str__(self) -> str:
        if self.problem is None:
            return (f"OK: {self.rows} commands, chain intact through seq {self.verified}, "
                    f"anchor at seq {self.anchor_seq}")  # fmt: skip
        return str(self.problem)


def verify(history: str | Path, key: str | Path | None = None) -> Verification:
    """Check the chain of history ``history`` with the key in ``key`` (default
    ``<history>.audit-key``) and its anchor. A problem of the chain is in the result;
    a history or key that cannot be read raises ConfigError."""
    db_path = Path(history)
    if not db_path.is_file():
        raise config_error(f"no history {db_path}", "history.path")
    secret, _ = load_key(key or default_key_path(db_path))
    # Read before the table: a writer may add rows in between, which puts the anchor
    # behind the table (fine), never ahead of it (a false "missing tail").
    anchor = read_anchor(anchor_path(db_path), secret)
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True,
                             isolation_level=None)  # fmt: skip
    except sqlite3.Error as exc:
        raise config_error(f"cannot open history {db_path}: {exc}", "history.path") from None
    try:
        db.execute("BEGIN")  # one snapshot for the count and the walk
        return _verify(db, secret, anchor)
    except sqlite3.Error as exc:
        raise config_error(f"cannot read history {db_path}: {exc}", "history.path") from None
    finally:
        db.close()


def _verify(db: sqlite3.Connection, key: bytes, anchor: Anchor | None) -> Verification:
    columns = {r[1] for r in db.execute("PRAGMA table_info(commands)")}
    if not {"seq", "mac", *COLUMNS} <= columns:
        raise sqlite3.DatabaseError("no chained commands table (not a vpp history, or one "
                                    "written before the audit chain)")  # fmt: skip
    (rows,) = db.execute("SELECT COUNT(*) FROM commands").fetchone()
    anchor_seq = anchor.head.seq if anchor is not None else None

    def result(verified: int, problem: Problem | None) -> Verification:
        return Verification(int(rows), verified, anchor_seq, problem)

    if anchor is not None and not anchor.key_ok:
        return result(0, Problem("wrong_key", 1, "this key is not the one the history was "
                                 "written with (the anchor's key check differs)"))  # fmt: skip
    # Only an intact anchor tells an inserted row from an edited one.
    trusted = anchor.head if anchor is not None and anchor.intact else None
    sql = f"SELECT id, seq, mac, {', '.join(COLUMNS)} FROM commands ORDER BY id"
    prev = EMPTY
    for rowid, seq, mac, *values in db.execute(sql):
        expected = prev.seq + 1
        if not isinstance(seq, int) or not isinstance(mac, str):
            return result(prev.seq, Problem("inserted", expected, f"row id {rowid} has no "
                                            "seq or MAC: not written by the history"))
        if seq != expected:
            return result(prev.seq, _misplaced(db, seq, expected))
        try:
            good = _mac(key, prev.mac, seq, values)
        except (TypeError, ValueError):
            good = b""  # a value the history never writes
        if not (mac.isascii() and hmac.compare_digest(mac, good.hex())):
            if trusted is not None and seq > trusted.seq:
                why = f"its MAC does not verify and it is past the anchor (seq {trusted.seq})"
                return result(prev.seq, Problem("inserted", seq, why))
            why = "its MAC does not match its content"
            if seq == 1 and anchor is None:
                why += " (or this is not the key it was written with)"
            return result(prev.seq, Problem("edited", seq, why))
        prev = Head(seq, good)
        if trusted is not None and trusted.seq == seq and good != trusted.mac:
            return result(prev.seq, Problem("anchor", seq, "the anchor names another MAC "
                                            "for this seq (the chain was rewritten)"))
    return result(prev.seq, _tail(prev, anchor))


def _misplaced(db: sqlite3.Connection, seq: int, expected: int) -> Problem:
    """Why the row of ``seq`` stands where ``expected`` should."""

    def count(n: int) -> int:
        (c,) = db.execute("SELECT COUNT(*) FROM commands WHERE seq = ?", (n,)).fetchone()
        return int(c)

    if seq < expected:
        # Every seq from 1 below ``expected`` was seen in its place already.
        what = "a second row with" if seq >= 1 and count(seq) > 1 else "a row with"
        return Problem("inserted", expected, f"{what} seq {seq} follows seq {expected - 1}")
    if count(expected):
        return Problem("reordered", expected, f"seq {seq} stands where seq {expected} belongs")
    last = f"to {seq - 1} are" if seq - 1 > expected else "is"
    return Problem("deleted", expected, f"seq {expected} {last} missing (row deleted)")


def _tail(last: Head, anchor: Anchor | None) -> Problem | None:
    """What the anchor says of a chain that verified up to ``last``."""
    if anchor is None:
        return Problem("anchor", last.seq + 1, "no anchor file: a deletion of the last rows "
                       "cannot be ruled out")  # fmt: skip
    if not anchor.intact:
        return Problem("anchor", last.seq + 1, "the anchor file was edited")
    if anchor.head.seq > last.seq:
        span = f"{last.seq + 1}" + (f" to {anchor.head.seq}" if anchor.head.seq > last.seq + 1
                                    else "")  # fmt: skip
        return Problem("missing_tail", last.seq + 1,
                       f"the table ends at seq {last.seq}, the anchor is at seq "
                       f"{anchor.head.seq}: seq {span} deleted")  # fmt: skip
    return None

