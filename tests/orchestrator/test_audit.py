"""The audit chain of commands: ``verify`` passes on what History wrote and finds every
edit, insertion, deletion, move, and a wrong key."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.orchestrator.audit_tampering import TAMPERINGS, command, make_history, opened
from vpp import cli
from vpp.errors import ConfigError
from vpp.orchestrator import audit
from vpp.orchestrator.history import History


def test_an_untouched_history_verifies(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    make_history(db, 7, per_flush=3)
    result = audit.verify(db)
    assert result.ok and (result.rows, result.verified, result.anchor_seq) == (7, 7, 7)
    assert str(result) == "OK: 7 commands, chain intact through seq 7, anchor at seq 7"


def test_an_empty_history_verifies(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    History(db).close()
    assert audit.verify(db).ok and audit.verify(db).rows == 0


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_each_tampering_is_found_with_its_seq(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.db"
    make_history(db, 6)
    kind, seq = TAMPERINGS[name](db)
    result = audit.verify(db)
    assert result.problem is not None
    assert (result.problem.kind, result.problem.seq) == (kind, seq), str(result)
    # And as the command line says it: one line naming the seq, exit 1.
    assert cli.main(["audit", "verify", "--history", str(db)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert f"seq {seq}: {kind.replace('_', ' ')}:" in err


def test_swapping_the_content_of_two_rows_is_an_edit(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    make_history(db, 5)
    with opened(db) as c:
        a = c.execute("SELECT params FROM commands WHERE seq = 2").fetchone()
        b = c.execute("SELECT params FROM commands WHERE seq = 4").fetchone()
        c.execute("UPDATE commands SET params = ? WHERE seq = 2", b)
        c.execute("UPDATE commands SET params = ? WHERE seq = 4", a)
    problem = audit.verify(db).problem
    assert problem is not None and (problem.kind, problem.seq) == ("edited", 2)


def test_renumbering_after_a_deletion_needs_the_key(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    make_history(db, 5)
    with opened(db) as c:
        c.execute("DELETE FROM commands WHERE seq = 3")
        c.execute("UPDATE commands SET seq = seq - 1 WHERE seq > 3")
    problem = audit.verify(db).problem
    assert problem is not None and (problem.kind, problem.seq) == ("edited", 3)


def test_a_copied_row_and_a_row_without_a_seq_are_insertions(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    make_history(db, 4)
    with opened(db) as c:
        cols = ", ".join((*audit.COLUMNS, "seq", "mac"))
        c.execute(f"INSERT INTO commands ({cols}) SELECT {cols} FROM commands WHERE seq = 2")
    assert str(audit.verify(db)) == "seq 5: inserted: a second row with seq 2 follows seq 4"
    make_history(db2 := tmp_path / "h2.db", 4)
    with opened(db2) as c:
        c.execute("INSERT INTO commands (t, command) VALUES (1.0, 'control')")
    problem = audit.verify(db2).problem
    assert problem is not None and (problem.kind, problem.seq) == ("inserted", 5)


def test_deleting_every_row_is_a_missing_tail(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    make_history(db, 3)
    with opened(db) as c:
        c.execute("DELETE FROM commands")
    assert str(audit.verify(db)) == (
        "seq 1: missing tail: the table ends at seq 0, the anchor is at seq 3: seq 1 to 3 "
        "deleted"
    )


def test_a_missing_or_edited_anchor_fails(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    make_history(db, 3)
    anchor = audit.anchor_path(db)
    doc = json.loads(anchor.read_text())
    anchor.write_text(json.dumps({**doc, "seq": 2}))  # a tail deletion hidden by hand
    problem = audit.verify(db).problem
    assert problem is not None and problem.kind == "anchor" and "edited" in problem.detail
    anchor.unlink()
    problem = audit.verify(db).problem
    assert problem is not None and (problem.kind, problem.seq) == ("anchor", 4)


def test_an_unreadable_history_or_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no history"):
        audit.verify(tmp_path / "nope.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, " * 100)
    audit.default_key_path(junk).write_text("00" * 32)
    with pytest.raises(ConfigError, match="cannot read history"):
        audit.verify(junk)
    db = tmp_path / "h.db"
    make_history(db, 2)
    with pytest.raises(ConfigError, match="no audit key"):
        audit.verify(db, tmp_path / "nokey")
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(ConfigError, match="not an audit key"):
        audit.verify(db, tmp_path / "short")


def test_a_key_elsewhere(tmp_path: Path) -> None:
    db, key = tmp_path / "h.db", tmp_path / "secret" / "audit.key"
    key.parent.mkdir()
    h = History(db, audit_key=key)
    h.add("commands", command(1))
    h.close()
    assert not audit.default_key_path(db).exists() and key.stat().st_mode & 0o777 == 0o600
    assert audit.verify(db, key).ok
    with pytest.raises(ConfigError, match="no audit key"):
        audit.verify(db)


# ---- any rows, any one tampering ----

_text = st.text(max_size=12)
_row = st.fixed_dictionaries({
    "t": st.floats(allow_nan=False, allow_infinity=False),
    "server": _text, "target": _text, "command": _text,
    "params": st.dictionaries(_text, st.integers() | st.floats() | _text, max_size=3),
    "identity": _text, "role": _text, "ok": st.booleans() | st.none(),
    "refused": st.none() | st.sampled_from(["not_authorised", "invalid", "rate_limited"]),
    "detail": _text | st.none(),
})  # fmt: skip
_rows = st.lists(_row, min_size=1, max_size=10)
_EDITABLE = (*audit.COLUMNS, "seq", "mac")


def _changed(column: str, value: Any) -> Any:
    """A stored value that surely differs from ``value``."""
    if column == "t":
        return value + 1.0 if value + 1.0 != value else value / 2 + 1.0
    if column in ("ok", "seq"):
        return 1 if value is None else value + 7
    if column == "mac":
        return ("0" if value[0] != "0" else "1") + value[1:]
    return "x" if value is None else value + "x"


@st.composite
def _tampering(draw: st.DrawFn, n: int) -> tuple[str, Any]:
    """One tampering of a history of ``n`` commands, as (kind, arguments)."""
    seq = st.integers(1, n)
    kind = draw(st.sampled_from(["edit", "delete", "truncate", "insert", "copy", "swap",
                                 "renumber", "key"]))  # fmt: skip
    if kind == "edit":
        return kind, (draw(seq), draw(st.sampled_from(_EDITABLE)))
    if kind in ("delete", "copy"):
        return kind, draw(seq)
    if kind == "truncate":
        return kind, draw(st.integers(1, n))
    if kind == "insert":
        return kind, draw(st.integers(-1, n + 2))
    if kind == "swap":
        a, b = draw(seq), draw(seq)
        return kind, (min(a, b), max(a, b))
    if kind == "renumber":
        return kind, draw(st.integers(1, n))
    return kind, draw(st.binary(min_size=32, max_size=32))


def _tamper(db: Path, kind: str, arg: Any) -> bool:
    """Apply one tampering; False when it turned out to change nothing."""
    cols = ", ".join(_EDITABLE)
    with opened(db) as c:
        if kind == "edit":
            seq, column = arg
            (old,) = c.execute(f"SELECT {column} FROM commands WHERE seq = ?", (seq,)).fetchone()
            c.execute(f"UPDATE commands SET {column} = ? WHERE seq = ?",
                      (_changed(column, old), seq))  # fmt: skip
        elif kind == "delete":
            c.execute("DELETE FROM commands WHERE seq = ?", (arg,))
        elif kind == "truncate":
            c.execute("DELETE FROM commands WHERE seq >= ?", (arg,))
        elif kind == "insert":
            c.execute("INSERT INTO commands (t, command, seq, mac) VALUES (1.0, 'x', ?, ?)",
                      (arg, "ab" * 32))  # fmt: skip
        elif kind == "copy":
            c.execute(f"INSERT INTO commands ({cols}) SELECT {cols} FROM commands WHERE seq = ?",
                      (arg,))  # fmt: skip
        elif kind == "swap":  # two whole rows trade places (ids stay)
            a, b = arg
            if a == b:
                return False
            sql = f"SELECT id, {cols} FROM commands WHERE seq = ?"
            ia, *ra = c.execute(sql, (a,)).fetchone()
            ib, *rb = c.execute(sql, (b,)).fetchone()
            sets = ", ".join(f"{x} = ?" for x in _EDITABLE)
            c.execute(f"UPDATE commands SET {sets} WHERE id = ?", (*rb, ia))
            c.execute(f"UPDATE commands SET {sets} WHERE id = ?", (*ra, ib))
        elif kind == "renumber":
            c.execute("DELETE FROM commands WHERE seq = ?", (arg,))
            c.execute("UPDATE commands SET seq = seq - 1 WHERE seq > ?", (arg,))
        else:
            audit.default_key_path(db).write_text(arg.hex())
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows, flushes=st.lists(st.integers(1, 4), max_size=4), data=st.data())
def test_verify_finds_any_one_tampering(
    rows: list[dict[str, Any]], flushes: list[int], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "h.db"
        # Written as the recorder would: in batches of random size, the history reopened
        # after each batch.
        it = iter(rows)
        for size in [*flushes, len(rows)]:
            h = History(db)
            for row in [r for _, r in zip(range(size), it, strict=False)]:
                h.add("commands", row)
            h.close()
        before = audit.verify(db)
        assert before.ok and before.rows == len(rows), str(before)
        kind, arg = data.draw(_tampering(len(rows)), label="tampering")
        if not _tamper(db, kind, arg):
            return
        after = audit.verify(db)
        assert not after.ok, f"{kind} {arg}: {after}"
        assert after.problem is not None and 1 <= after.problem.seq <= len(rows) + 1


def test_what_is_stored_is_what_was_maced() -> None:
    # What the property test relies on: what History stores is what it MAC'd, for the
    # odd values too (an int t, a number in a text column, NUL, non-ASCII).
    h = History(":memory:")
    h.add("commands", {"t": 5, "target": 7, "detail": 0.1 + 0.2, "identity": "a\x00é",
                       "params": {"b": 1, "a": [1.5]}, "ok": 2})  # fmt: skip
    h.flush()
    (row,) = h.rows("commands")
    assert (row["t"], row["target"], row["detail"], row["identity"], row["params"], row["ok"]) \
        == (5.0, "7", "0.30000000000000004", "a\x00é", '{"a": [1.5], "b": 1}', 1)  # fmt: skip
    h.close()


def test_the_sqlite_file_can_be_read_while_a_writer_has_it_open(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    h = History(db)
    for i in range(1, 4):
        h.add("commands", command(i))
    h.flush()
    try:
        assert audit.verify(db).ok  # read-only, beside the writer (WAL)
        h.add("commands", command(4))
        h.flush()
        assert audit.verify(db).rows == 4
    finally:
        h.close()
