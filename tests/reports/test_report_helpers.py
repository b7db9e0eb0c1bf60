"""Properties of the pure helpers of vpp.reports: SVG scaling, charts, ticks, CSV, times,
and reading an event's data back from its text."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpp.errors import HistoryError
from vpp.reports import svg
from vpp.reports.query import COMMAND_COLUMNS, UNIT_COLUMNS, event_data, parse_time
from vpp.reports.tables import INTEGER_COLUMNS, TEXT_COLUMNS, format_table, from_csv, to_csv

anything = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False)


@given(anything, anything, anything, finite, finite)
def test_scale_never_leaves_the_output_interval(
    v: float, lo: float, hi: float, a: float, b: float
) -> None:
    assert min(a, b) <= svg.scale(v, lo, hi, a, b) <= max(a, b)


@given(finite, finite, finite)
def test_scale_is_linear_inside_the_range(lo: float, span: float, frac: float) -> None:
    span, frac = abs(span) % 1e6 + 1e-3, abs(frac) % 1.0
    lo = lo % 1e6
    v = lo + frac * span
    assert svg.scale(v, lo, lo + span, 0.0, 100.0) == pytest.approx(100.0 * frac, abs=1e-3)


series = st.lists(st.tuples(anything, anything), max_size=30)


@given(st.lists(series, min_size=1, max_size=3), st.lists(anything, max_size=3))
def test_no_point_of_a_chart_lies_outside_its_plot_box(
    lines: list[list[tuple[float, float]]], levels: list[float]
) -> None:
    drawn = [svg.Series(f"s{i}", [p[0] for p in pts], [p[1] for p in pts])
             for i, pts in enumerate(lines)]  # fmt: skip
    chart = svg.line_chart(
        "t", drawn, levels=[svg.Level(str(i), y) for i, y in enumerate(levels) if math.isfinite(y)]
    )
    box = re.search(r'<rect class="plot" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" '
                    r'height="([\d.]+)"', chart)  # fmt: skip
    assert box is not None
    x, y, w, h = (float(v) for v in box.groups())
    found = re.findall(r'data-series="s(\d+)" points="([^"]*)"', chart)
    assert len(found) == len(lines)
    for i, points in found:
        pts = [tuple(map(float, p.split(","))) for p in points.split()]
        finite_pts = [p for p in lines[int(i)] if math.isfinite(p[0]) and math.isfinite(p[1])]
        assert len(pts) == len(finite_pts)  # one point per finite sample
        for px, py in pts:
            assert x <= px <= x + w and y <= py <= y + h


@given(finite, finite, st.integers(min_value=1, max_value=20))
def test_ticks_are_round_increasing_and_within_the_range(a: float, b: float, n: int) -> None:
    lo, hi = sorted((a % 1e9, b % 1e9))
    ticks = svg.nice_ticks(lo, hi, n)
    assert ticks == sorted(ticks)
    span = hi - lo
    for t in ticks:
        assert lo - 1e-9 * max(1.0, abs(lo)) <= t <= hi + 1e-9 * max(1.0, abs(hi)) + span * 1e-9
    if hi - lo > 1e-9 * max(1.0, abs(hi)):
        # Steps of 1, 2 or 5 x 10^k, at least the n-th of the range, at most 2.5 times it.
        assert len(ticks) <= n + 2
        assert n < 3 or ticks


text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


def _value(column: str) -> st.SearchStrategy[object]:
    if column in TEXT_COLUMNS:
        return st.none() | text
    if column in INTEGER_COLUMNS:
        return st.none() | st.integers(-(2**63), 2**63 - 1)
    return st.none() | finite


def _rows(columns: tuple[str, ...]) -> st.SearchStrategy[list[dict[str, object]]]:
    return st.lists(st.fixed_dictionaries({c: _value(c) for c in columns}), max_size=8)


@given(_rows(UNIT_COLUMNS))
def test_unit_rows_round_trip_through_csv(rows: list[dict[str, object]]) -> None:
    assert from_csv(to_csv(rows, UNIT_COLUMNS)) == rows


@given(_rows(COMMAND_COLUMNS))
def test_command_rows_round_trip_through_csv(rows: list[dict[str, object]]) -> None:
    assert from_csv(to_csv(rows, COMMAND_COLUMNS)) == rows


@given(_rows(UNIT_COLUMNS))
def test_the_table_has_a_line_per_row(rows: list[dict[str, object]]) -> None:
    # Texts without line breaks, as the history's texts are.
    rows = [{k: v.replace("\n", " ").replace("\r", " ") if isinstance(v, str) else v
             for k, v in r.items()} for r in rows]  # fmt: skip
    lines = format_table(rows, UNIT_COLUMNS).split("\n")
    assert lines[-1] == "" and len(lines) == len(rows) + 2


@given(st.floats(min_value=0, max_value=4e9), st.integers(-12, 14))
def test_times_read_as_unix_seconds_or_iso_8601(t: float, hours: int) -> None:
    assert parse_time(repr(t)) == t
    when = datetime.fromtimestamp(t, UTC).astimezone(timezone(timedelta(hours=hours)))
    assert parse_time(when.isoformat()) == pytest.approx(t, abs=1e-6)
    naive = datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat()
    assert parse_time(naive) == pytest.approx(t, abs=1e-6)  # no offset: UTC


def test_a_time_that_is_neither_is_a_history_error() -> None:
    with pytest.raises(HistoryError, match="cannot read the time"):
        parse_time("last tuesday")


@given(text, st.dictionaries(text, st.none() | finite | text, max_size=4))
def test_event_data_is_read_back_after_any_text(prefix: str, data: dict[str, object]) -> None:
    # As the recorder writes it: f"{text} {json}" (text stripped when empty).
    recorded = f"{prefix} {json.dumps(data, sort_keys=True)}".strip()
    assert event_data(recorded) == data


def test_event_data_of_a_text_without_data_is_none() -> None:
    assert event_data("frequency event start: under") is None
    assert event_data("") is None and event_data(None) is None
    assert event_data('braces {inside} the text {"a": 1}') == {"a": 1}
