"""``vpp report event N`` on the history of a real run: the plots hold every sample of the
history, and the compliance table the grid's recorded figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.orchestrator.procs import vpp
from tests.reports.conftest import raw_events, raw_rows
from vpp.reports.event_report import CRITERION_UNITS
from vpp.reports.query import HistoryReader

MARGIN = 5.0


@pytest.fixture(scope="module")
def report(history: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """The HTML of the report of the run's ended event, and its number."""
    end = next(d for d in raw_events(history, "frequency_event") if d["phase"] == "end")
    with HistoryReader(history) as reader:
        number = next(e["number"] for e in reader.events() if e["start"] == end["start"])
    out = tmp_path_factory.mktemp("report") / "event.html"
    r = vpp("report", "event", str(number), "--history", str(history), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    return out.read_text(encoding="utf-8"), number


def _charts(html: str) -> dict[str, str]:
    """Each ``<svg>`` of the page by its title."""
    return {m.group(1): m.group(0) for m in re.finditer(
        r"<svg[^>]*>\s*<title>([^<]*)</title>.*?</svg>", html, re.S)}  # fmt: skip


def _points(chart: str, series: str) -> list[tuple[float, float]]:
    m = re.search(rf'<polyline data-series="{re.escape(series)}" points="([^"]*)"', chart)
    assert m is not None, f"no {series} line"
    return [(float(x), float(y)) for x, y in (p.split(",") for p in m.group(1).split())]


def _window(history: Path, number: int) -> tuple[float, float]:
    starts = sorted({d["start"] for d in raw_events(history, "frequency_event")})
    end = next(d for d in raw_events(history, "frequency_event")
               if d["phase"] == "end" and d["start"] == starts[number - 1])  # fmt: skip
    return end["start"] - MARGIN, end["end"] + MARGIN


def test_the_report_is_one_self_contained_file(report: tuple[str, int]) -> None:
    html, _ = report
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower() and "<link" not in html.lower()
    # No address but the SVG namespace: nothing is fetched when the page opens.
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_every_plot_has_a_point_per_sample_inside_its_box(
    history: Path, report: tuple[str, int]
) -> None:
    html, number = report
    charts = _charts(html)
    lo, hi = _window(history, number)
    decisions = raw_rows(history, "SELECT * FROM decisions WHERE t >= ? AND t <= ? ORDER BY t, id",
                         (lo, hi))  # fmt: skip
    # One sample per PMU frame: the first decision row of each time (the units of one
    # field controller log the same frame).
    frames: dict[float, dict[str, float]] = {}
    for d in decisions:
        frames.setdefault(d["t"], d)
    n_freq = sum(1 for d in frames.values() if d["freq_hz"] is not None)
    n_rocof = sum(1 for d in frames.values() if d["rocof_hz_s"] is not None)
    assert len(_points(charts["Frequency"], "frequency")) == n_freq > 100
    assert len(_points(charts["ROCOF"], "ROCOF")) == n_rocof > 100
    units = sorted({d["unit"] for d in decisions})
    assert units == ["bess-1", "bess-2", "bess-3"]
    (compliance,) = [c for c in raw_events(history, "compliance")]
    judged = set(compliance["units"])
    assert judged
    for unit in units:
        title = next(t for t in charts if t.startswith(f"{unit} response"))
        mine = [d for d in decisions if d["unit"] == unit and d["response_kw"] is not None]
        telemetry = raw_rows(history, "SELECT t FROM telemetry WHERE unit = ? AND t >= ? AND "
                             "t <= ? AND power_kw IS NOT NULL", (unit, lo, hi))  # fmt: skip
        assert len(_points(charts[title], "decided")) == len(mine)
        if unit in judged:
            assert len(_points(charts[title], "expected droop")) == len(mine)
        else:
            # No share at the event (the grid left it out: no headroom both ways), so
            # there is no expected response to draw.
            assert 'data-series="expected droop"' not in charts[title]
        assert len(_points(charts[title], "measured")) == len(telemetry)
    fleet = next(t for t in charts if t.startswith("Fleet"))
    telemetry_times = {r["t"] for r in raw_rows(
        history, "SELECT t FROM telemetry WHERE t >= ? AND t <= ?", (lo, hi))}  # fmt: skip
    assert len(_points(charts[fleet], "measured")) == len(telemetry_times)
    answered = {d["t"] for d in decisions if None not in (d["freq_hz"], d["response_kw"])}
    assert len(_points(charts[fleet], "expected droop")) == len(answered)
    assert len(_points(charts[fleet], "decided")) == len(answered)
    for chart in charts.values():
        box = re.search(r'<rect class="plot" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" '
                        r'height="([\d.]+)"', chart)  # fmt: skip
        assert box is not None
        x, y, w, h = (float(v) for v in box.groups())
        for line in re.findall(r'data-series="([^"]*)"', chart):
            for px, py in _points(chart, line):
                assert x <= px <= x + w and y <= py <= y + h


def test_the_frequency_plot_shows_the_band_edges_and_the_deadband(report: tuple[str, int]) -> None:
    chart = _charts(report[0])["Frequency"]
    levels = re.findall(r'<line class="level"[^>]*>\s*<text[^>]*>([^<]*)</text>', chart)
    assert any("49.9 Hz" in lv for lv in levels) and any("50.05 Hz" in lv for lv in levels)
    assert all("deadband" in lv for lv in levels)  # the default site: the same edges


def test_a_compliance_row_per_criterion_with_the_grids_figures(
    history: Path, report: tuple[str, int]
) -> None:
    html, number = report
    start = sorted({d["start"] for d in raw_events(history, "frequency_event")})[number - 1]
    recorded = next(c for c in raw_events(history, "compliance") if c["event_start"] == start)
    assert recorded["fleet"] is not None, recorded.get("reason")
    results = {"fleet": recorded["fleet"], **recorded["units"]}
    rows = re.findall(r'<tr class="(pass|fail)" data-who="([^"]*)" data-criterion="([^"]*)">'
                      r"(.*?)</tr>", html, re.S)  # fmt: skip
    seen = set()
    for verdict, who, name, cells in rows:
        crit = next(c for c in results[who]["criteria"] if c["name"] == name)
        values = re.findall(r'data-value="([^"]*)"', cells)
        measured = None if crit["value"] is None else float(values.pop(0))
        assert measured == crit["value"]
        assert float(values[0]) == crit["limit"]
        assert verdict == ("pass" if crit["passed"] else "fail")
        assert CRITERION_UNITS[name] in cells
        seen.add((who, name))
    assert seen == {(who, c["name"]) for who, r in results.items() for c in r["criteria"]}
    # The fleet and each unit with a share, five criteria each.
    assert recorded["units"] and len(seen) == (1 + len(recorded["units"])) * 5
