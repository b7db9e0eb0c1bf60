"""Frequency event detection (vpp.orchestrator.grid.events) on synthetic traces whose
start, nadir, recovery and end are known in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpp.errors import ConfigError
from vpp.orchestrator.grid.events import (
    EventDetectionConfig,
    FrequencyEventDetector,
    detect_events,
)
from vpp.validation import validate_model

T0 = 1_700_000_000.0  # UNIX seconds, as PMU frame times are
RATE = 10


def trace(knots_t: list[float], knots_f: list[float], duration: float) -> tuple[np.ndarray, ...]:
    """Samples at RATE of the piecewise-linear frequency through the knots (relative s)."""
    tr = np.arange(round(duration * RATE) + 1) / RATE
    return tr, np.interp(tr, knots_t, knots_f)


def test_under_frequency_event_start_nadir_recovery_end() -> None:
    # 50 Hz until 10 s, down 0.12 Hz/s to 49.70 at 12.5 s, up 0.052 Hz/s to 49.96 at 17.5 s.
    tr, f = trace([0, 10, 12.5, 17.5, 40], [50, 50, 49.70, 49.96, 49.96], 40)
    rocof = np.gradient(f, tr)
    rocof[tr == 11.0] = -0.5  # one spiky estimate inside the event
    det = FrequencyEventDetector()
    updates = [det.update(T0 + a, b, r) for a, b, r in zip(tr, f, rocof, strict=True)]
    kinds = [(u.kind, round(float(tr[i]), 3)) for i, u in enumerate(updates) if u is not None]
    # First sample below 49.90: 10.9 s (49.892). Recovery needs >= 49.91 (hysteresis):
    # first at 16.6 s (49.9132); the 5 s hold completes at 21.6 s.
    assert kinds == [("start", 10.9), ("end", 21.6)]
    (ev,) = det.events
    assert ev.trigger == "low" and ev.direction == "under"
    assert ev.start == pytest.approx(T0 + 10.9, abs=1e-6)
    assert ev.nadir_hz == 49.70 and ev.nadir_time == pytest.approx(T0 + 12.5, abs=1e-6)
    assert ev.extreme_hz == 49.70
    assert ev.max_rocof_hz_s == -0.5 and ev.max_rocof_time == pytest.approx(T0 + 11.0)
    assert ev.recovered == pytest.approx(T0 + 16.6, abs=1e-6)
    assert ev.end == pytest.approx(T0 + 21.6, abs=1e-6)
    assert ev.duration == pytest.approx(10.7, abs=1e-6)
    assert ev.samples == 108  # 10.9 .. 21.6 inclusive at 10 frames/s
    assert det.active is None and not ev.active
    assert ev.to_dict()["direction"] == "under"


def test_over_frequency_event_has_a_zenith() -> None:
    tr, f = trace([0, 5, 6, 9, 30], [50, 50, 50.20, 50.0, 50.0], 30)
    (ev,) = detect_events(T0 + tr, f)
    assert ev.trigger == "high" and ev.direction == "over"
    assert ev.zenith_hz == 50.20 and ev.zenith_time == pytest.approx(T0 + 6.0)
    # Above 50.05 from 5.3 s (50.06); back to <= 50.04 at 8.4 s; ends 5 s later.
    assert ev.start == pytest.approx(T0 + 5.3, abs=1e-6)
    assert ev.end == pytest.approx(T0 + 13.4, abs=1e-6)


def test_rocof_alone_starts_an_event_inside_the_band() -> None:
    tr = np.arange(200) / RATE
    f = np.full_like(tr, 49.97)
    rocof = np.zeros_like(tr)
    rocof[(tr >= 3.0) & (tr < 3.5)] = 0.3
    (ev,) = detect_events(T0 + tr, f, rocof)
    assert ev.trigger == "rocof" and ev.max_rocof_hz_s == 0.3
    assert ev.start == pytest.approx(T0 + 3.0)
    assert ev.recovered == pytest.approx(T0 + 3.5) and ev.end == pytest.approx(T0 + 8.5)
    off = EventDetectionConfig(rocof_threshold_hz_s=None)
    assert detect_events(T0 + tr, f, rocof, off) == []


@pytest.mark.parametrize(("start_hz", "rocof", "direction"), [
    (50.01, -0.3, "under"), (49.99, 0.3, "over"), (50.0, -0.2, "under")])  # fmt: skip
def test_a_rocof_start_inside_the_band_goes_the_way_the_frequency_goes(
    start_hz: float, rocof: float, direction: str
) -> None:
    # A trip: the frequency is still at (or just above) nominal when the ROCOF starts the
    # event. The start must not be called over-frequency while the frequency falls.
    det = FrequencyEventDetector()
    upd = det.update(T0, start_hz, rocof)
    assert upd is not None and upd.kind == "start"
    assert upd.event.trigger == "rocof" and upd.event.direction == direction
    # Once it has left the band, the excursion decides.
    det.update(T0 + 1.0, 49.7 if direction == "under" else 50.3, rocof)
    assert upd.event.direction == direction


def test_relapse_during_the_hold_keeps_one_event() -> None:
    # Recovers at 4 s, dips out again at 6 s (within the 5 s hold), recovers at 8 s.
    tr, f = trace([0, 1, 2, 4, 5, 6, 7, 8, 30], [50, 50, 49.8, 50, 50, 49.85, 49.85, 50, 50], 30)
    events = detect_events(T0 + tr, f)
    assert len(events) == 1
    ev = events[0]
    assert ev.nadir_hz == 49.8
    assert ev.recovered is not None and ev.recovered > T0 + 7.0
    assert ev.end == pytest.approx(ev.recovered + 5.0, abs=1e-6)


def test_event_still_active_at_the_end_of_the_trace() -> None:
    tr, f = trace([0, 1, 2, 10], [50, 50, 49.5, 49.5], 10)
    (ev,) = detect_events(T0 + tr, f)
    assert ev.active and ev.end is None and ev.duration is None and ev.nadir_hz == 49.5


def test_invalid_samples_are_counted_and_skipped() -> None:
    det = FrequencyEventDetector()
    assert det.update(T0, 50.0) is None
    assert det.update(T0 + 0.1, math.nan) is None  # bad frequency
    assert det.update(T0 - 0.05, 49.0) is None  # time went backwards
    assert det.update(T0, 49.0) is None  # repeated time
    assert det.update(math.inf, 49.0) is None
    assert det.update(T0 + 0.2, -1.0) is None
    assert det.invalid_count == 5 and det.active is None
    update = det.update(T0 + 0.3, 49.8, math.nan)  # unknown ROCOF: frequency decides
    assert update is not None and update.kind == "start" and update.event.trigger == "low"
    assert update.event.max_rocof_time is None


@pytest.mark.parametrize(
    ("data", "field"),
    [({"hold_s": -1.0}, "hold_s"), ({"rocof_threshold_hz_s": 0.0}, "rocof_threshold_hz_s")],
)
def test_bad_config_is_a_config_error(data: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_model(EventDetectionConfig, data, "event detection")
    assert info.value.field == field


def test_band_must_contain_nominal_with_room_for_hysteresis() -> None:
    with pytest.raises(ConfigError, match="low_hz < nominal_hz < high_hz"):
        validate_model(EventDetectionConfig, {"low_hz": 50.1}, "event detection")
    with pytest.raises(ConfigError, match="hysteresis"):
        validate_model(EventDetectionConfig, {"hysteresis_hz": 0.1}, "event detection")
    with pytest.raises(ConfigError) as info:
        detect_events([0.0, 1.0], [50.0])
    assert info.value.field == "f"


def test_a_bounded_detector_keeps_the_last_events_and_counts_them_all() -> None:
    # The grid service keeps its detector bounded (keep=HISTORY): a long run of events
    # must not grow its memory, while the count stays right.
    det = FrequencyEventDetector(EventDetectionConfig(hold_s=0.0), keep=2)
    t = T0
    for _ in range(5):
        for f in (50.0, 49.5, 50.0):
            t += 1.0
            det.update(t, f)
    assert det.finished == 5 and len(det.events) == 2
    assert [e.start for e in det.events] == [T0 + 11.0, T0 + 14.0]
