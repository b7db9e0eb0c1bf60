"""Liveness and Roster: bounded peer tracking, and who may speak for what on the bus."""

from __future__ import annotations

import collections
import logging

import pytest

from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.liveness import Liveness, Roster

OWNERS = {"bess-1": "field-a", "bess-2": "field-a", "bess-3": "field-b"}
NOW = 1_700_000_000.0


def _at(body: s.Heartbeat | s.Telemetry | s.Frequency | s.Decision | s.Event, sender: str,
        dt: float = 0.0) -> s.Message:  # fmt: skip
    """A message from ``sender`` dated ``dt`` s from NOW."""
    return s.make(body, sender).model_copy(update={"ts": NOW + dt})


def _tel(unit: str) -> s.Telemetry:
    return s.Telemetry(unit=unit, p_kw=0.0, soc_pct=50.0, temp_c=20.0,
                       limits=s.Limits(p_min_kw=-100.0, p_max_kw=100.0))  # fmt: skip


def _decision(unit: str, t: float) -> s.Decision:
    return s.Decision(unit=unit, t=t, hz=50.0, response_kw=0.0, base_kw=0.0, setpoint_kw=0.0)


def _roster(errors: collections.Counter[str] | None = None, **kw: int) -> Roster:
    return Roster(OWNERS, max_future_s=5.0, max_age_s=30.0, errors=errors, where="test",
                  **kw)  # fmt: skip


# ---- Liveness ----


def test_liveness_tracks_only_allowed_senders() -> None:
    now = [0.0]
    live = Liveness(1.0, 3, clock=lambda: now[0], allowed={"field-a"})
    live.observe(_at(s.Event(kind="x"), "field-a"))
    for i in range(5000):
        live.observe(_at(s.Event(kind="x"), f"fake-{i}"))
    assert list(live.peers) == ["field-a"] and live.refused == 5000


def test_liveness_evicts_the_longest_silent_beyond_max_peers() -> None:
    now = [0.0]
    live = Liveness(1.0, 3, clock=lambda: now[0], max_peers=3)
    for name in ("a", "b", "c"):
        now[0] += 1.0
        live.observe(_at(s.Event(kind="x"), name))
    now[0] += 1.0
    live.observe(_at(s.Event(kind="x"), "a"))  # "a" spoke last: "b" is the longest silent
    live.observe(_at(s.Event(kind="x"), "d"))
    assert list(live.peers) == ["c", "a", "d"] and live.evicted == 1
    # A flood of new names never holds more than max_peers.
    for i in range(20_000):
        live.observe(_at(s.Event(kind="x"), f"fake-{i}"))
    assert len(live.peers) == 3 and live.evicted == 20_001


def test_liveness_forgets_peers_long_offline() -> None:
    now = [0.0]
    changes: list[tuple[str, bool]] = []
    live = Liveness(1.0, 3, on_change=lambda p: changes.append((p.id, p.alive)),
                    clock=lambda: now[0], forget_after=60.0)  # fmt: skip
    live.observe(_at(s.Event(kind="x"), "old"))
    now[0] = 50.0
    live.observe(_at(s.Event(kind="x"), "young"))
    now[0] = 55.0
    live.check()  # both silent past the 3 s timeout: offline, not forgotten yet
    assert set(live.peers) == {"old", "young"} and live.alive() == []
    now[0] = 61.0
    live.check()
    assert list(live.peers) == ["young"] and live.evicted == 1
    # Back after being forgotten: a new peer, online.
    live.observe(_at(s.Event(kind="x"), "old"))
    assert changes[-1] == ("old", True) and live.alive() == ["old"]


def test_liveness_refuses_a_cap_below_one() -> None:
    with pytest.raises(ValueError, match="max_peers"):
        Liveness(1.0, 3, max_peers=0)


# ---- Roster ----


@pytest.mark.parametrize(
    ("msg", "kind"),
    [
        (_at(_tel("bess-3"), "field-b"), None),
        (_at(_tel("bess-3"), "field-a"), "not_owner"),  # a real field controller, not its owner
        (_at(_tel("bess-3"), "mallory"), "not_owner"),
        (_at(_tel("ghost"), "field-a"), "unknown_unit"),
        (_at(_tel("bess-3"), "field-b", dt=5.5), "future"),
        (_at(_tel("bess-3"), "field-b", dt=-31.0), "stale"),
        (_at(_tel("bess-3"), "field-b", dt=4.9), None),
        (_at(s.Heartbeat(role="unit", id="bess-1", owner="field-a"), "field-a"), None),
        # The name in the body is not the sender: a heartbeat's owner proves nothing.
        (_at(s.Heartbeat(role="unit", id="bess-1", owner="field-b"), "field-b"), "not_owner"),
        (_at(s.Heartbeat(role="unit", id="ghost", owner="field-a"), "field-a"), "unknown_unit"),
        (_at(s.Heartbeat(role="field", id="field-b"), "field-b"), None),
        (_at(s.Heartbeat(role="field", id="field-b"), "field-a"), "not_owner"),
        (_at(s.Heartbeat(role="field", id="fake"), "fake"), "unknown_field"),
        (_at(s.Heartbeat(role="market", id="market"), "market"), None),  # no rule: passes
        (_at(s.Frequency(hz=50.0, band="n", t=NOW), "field-b"), None),
        (_at(s.Frequency(hz=50.0, band="n", t=NOW), "mallory"), "unknown_sender"),
        (_at(s.Frequency(hz=50.0, band="n", t=NOW + 3600), "field-a"), "future"),
        (_at(s.Frequency(hz=50.0, band="n", t=NOW - 3600), "field-a"), "stale"),
        (_at(_decision("bess-1", NOW), "field-b"), "not_owner"),
        (_at(_decision("bess-1", NOW + 60), "field-a"), "future"),
        (_at(s.Event(kind="x"), "anyone"), None),
        (_at(s.Event(kind="x"), "anyone", dt=100.0), "future"),
    ],
)
def test_roster_rules(msg: s.Message, kind: str | None) -> None:
    assert _roster().check(msg, NOW) == kind


def test_roster_counts_every_refusal_and_logs_once_per_kind_and_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: collections.Counter[str] = collections.Counter()
    roster = _roster(errors, log_senders=50)
    caplog.set_level(logging.WARNING, "vpp.orchestrator.bus.liveness")
    for _ in range(100):
        assert not roster.admit(_at(_tel("bess-3"), "mallory"), NOW)
        assert not roster.admit(_at(_tel("ghost"), "mallory"), NOW)
    assert errors == {"not_owner": 100, "unknown_unit": 100}
    assert len(caplog.records) == 2
    assert "'bess-3'" in caplog.records[0].getMessage()
    # A flood from many names: counted, but the log and the memory of what was logged
    # stop at log_senders (one more line says so).
    for i in range(10_000):
        roster.admit(_at(_tel(f"fake-{i}"), f"fake-{i}"), NOW)
    assert errors["unknown_unit"] == 10_100
    assert len(caplog.records) == 50 + 1
    assert "not logged" in caplog.records[-1].getMessage()
    assert len(roster._logged) <= 51


def test_roster_units_of_a_field() -> None:
    roster = _roster()
    assert roster.units_of("field-a") == ["bess-1", "bess-2"]
    assert roster.fields == {"field-a", "field-b"}
