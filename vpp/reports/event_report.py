"""``vpp report event N``: one self-contained HTML file about one frequency event.

The page holds the event's record, inline SVG charts (:mod:`vpp.reports.svg`) of the
frequency with the IEGC band edges and the droop deadband, the ROCOF with the detection
threshold, the fleet's and each unit's response against the expected droop response
(:mod:`vpp.reports.response`), and the grid's compliance result as recorded in the
history: one row per criterion with its measured figure, limit and verdict. No script,
no stylesheet or font from elsewhere: it opens offline and prints as it shows.

Each figure of the compliance table also carries its exact value in ``data-value`` (the
shown text is rounded), so that a program can read the report back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from vpp.reports import svg
from vpp.reports.response import EventResponse, UnitResponse
from vpp.reports.tables import iso

__all__ = ["CRITERION_UNITS", "render"]

#: The unit of each criterion's figure (docs/grid.md, Compliance).
CRITERION_UNITS = {
    "start_delay": "s",
    "full_delay": "s",
    "rms_error": "% of rating",
    "max_error": "% of rating",
    "rel_rms_error": "% of expected",
}

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fbe3e3; }
.pass { color: #1d6b2a; font-weight: bold; }
.fail { color: #a11d1d; font-weight: bold; }
figure { margin: 1em 0; }
p.note { color: #555; font-size: 90%; }
"""


def _rel(values: Sequence[float], t0: float) -> list[float]:
    return [t - t0 for t in values]


def _marks(r: EventResponse) -> list[tuple[str, float]]:
    ev = r.event
    t0 = ev["start"]
    marks = [("start", 0.0)]
    if ev.get("end") is not None:
        marks.append(("end", ev["end"] - t0))
    return marks


def _charts(r: EventResponse) -> list[str]:
    t0 = r.event["start"]
    x_label = "s from the event start"
    marks = _marks(r)
    lo, hi = r.band_hz
    dlo, dhi = r.deadband_hz
    levels = [svg.Level(f"IEGC band {lo:g} Hz", lo, "#2a7a2a"),
              svg.Level(f"IEGC band {hi:g} Hz", hi, "#2a7a2a")]  # fmt: skip
    if (dlo, dhi) != (lo, hi):
        levels += [svg.Level(f"deadband {dlo:g} Hz", dlo, "#b07a00"),
                   svg.Level(f"deadband {dhi:g} Hz", dhi, "#b07a00")]  # fmt: skip
    else:
        levels[0] = svg.Level(f"IEGC band = droop deadband {lo:g} Hz", lo, "#2a7a2a")
        levels[1] = svg.Level(f"IEGC band = droop deadband {hi:g} Hz", hi, "#2a7a2a")
    charts = [svg.line_chart(
        "Frequency", [svg.Series("frequency", _rel(r.freq_t, t0), r.freq_hz)],
        y_label="Hz", x_label=x_label, levels=levels, marks=marks,
    )]  # fmt: skip
    thr = r.rocof_threshold_hz_s
    rocof_levels = [] if thr is None else [svg.Level(f"+{thr:g} Hz/s", thr),
                                           svg.Level(f"-{thr:g} Hz/s", -thr)]  # fmt: skip
    charts.append(svg.line_chart(
        "ROCOF", [svg.Series("ROCOF", _rel(r.rocof_t, t0), r.rocof_hz_s, "#7a3fa8")],
        y_label="Hz/s", x_label=x_label, levels=rocof_levels, marks=marks,
    ))  # fmt: skip
    power_t, decision_t = _rel(r.fleet_power_t, t0), _rel(r.fleet_decision_t, t0)
    charts.append(svg.line_chart(
        "Fleet response (change from baseline)",
        [svg.Series("measured", power_t, r.fleet_measured_kw, "#1f5fa8"),
         svg.Series("decided", decision_t, r.fleet_decided_kw, "#e07b00", "5 3"),
         svg.Series("expected droop", decision_t, r.fleet_expected_kw, "#222222", "2 2")],
        y_label="kW", x_label=x_label, levels=[svg.Level("0 kW", 0.0)], marks=marks,
    ))  # fmt: skip
    for u in r.units.values():
        charts.append(_unit_chart(u, t0, x_label, marks))
    return charts


def _unit_chart(u: UnitResponse, t0: float, x_label: str, marks: list[tuple[str, float]]) -> str:
    decision_t = _rel(u.decision_t, t0)
    series = [svg.Series("measured", _rel(u.power_t, t0), u.measured_kw, "#1f5fa8"),
              svg.Series("decided", decision_t, u.decided_kw, "#e07b00", "5 3")]  # fmt: skip
    if u.characteristic is not None:
        series.append(svg.Series("expected droop", decision_t, u.expected_kw, "#222222", "2 2"))
    return svg.line_chart(
        f"{u.unit} response (change from baseline {u.baseline_kw:+.1f} kW)", series,
        y_label="kW", x_label=x_label, levels=[svg.Level("0 kW", 0.0)], marks=marks,
    )  # fmt: skip


def _num_cell(value: Any, fmt: str = "{:.4g}") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return '<td class="num">n/a</td>'
    return f'<td class="num" data-value="{float(value)!r}">{fmt.format(value)}</td>'


def _compliance_rows(who: str, result: Mapping[str, Any]) -> list[str]:
    rows = []
    for c in result.get("criteria") or []:
        name = str(c.get("name"))
        ok = bool(c.get("passed"))
        verdict = "pass" if ok else "fail"
        rows.append(
            f'<tr class="{verdict}" data-who="{escape(who)}" data-criterion="{escape(name)}">'
            f"<td>{escape(who)}</td><td>{escape(name)}</td>"
            f"{_num_cell(c.get('value'))}{_num_cell(c.get('limit'))}"
            f"<td>{escape(CRITERION_UNITS.get(name, ''))}</td>"
            f'<td class="{verdict}">{verdict}</td><td>{escape(str(c.get("reason", "")))}</td></tr>'
        )
    return rows


def _compliance(r: EventResponse) -> str:
    c = r.compliance
    if c is None:
        why = "the event has not ended" if r.event.get("end") is None else "none was recorded"
        return f"<h2>Compliance</h2><p>No compliance result: {why}.</p>"
    fleet = c.get("fleet")
    if not isinstance(fleet, Mapping):
        return f"<h2>Compliance</h2><p>Not judged: {escape(str(c.get('reason', '')))}.</p>"
    units = c.get("units") or {}
    rows = _compliance_rows("fleet", fleet)
    for unit in sorted(units):
        rows += _compliance_rows(unit, units[unit])
    head = ("<tr><th>who</th><th>criterion</th><th>measured</th><th>limit</th><th>unit</th>"
            "<th>verdict</th><th>reason</th></tr>")  # fmt: skip
    metrics = ["<tr><th>who</th><th>share kW</th><th>source</th><th>peak expected kW</th>"
               "<th>peak measured kW</th><th>gain ratio</th><th>verdict</th></tr>"]  # fmt: skip
    for who, res in [("fleet", fleet), *sorted(units.items())]:
        m = res.get("metrics") or {}
        share = m.get("rating_kw") if who == "fleet" else res.get("share_kw")
        verdict = "pass" if res.get("passed") else "fail"
        metrics.append(
            f"<tr><td>{escape(who)}</td>{_num_cell(share)}"
            f"<td>{escape(str(res.get('source', 'sum of units')))}</td>"
            f"{_num_cell(m.get('peak_expected_kw'))}{_num_cell(m.get('peak_measured_kw'))}"
            f'{_num_cell(m.get("gain_ratio"), "{:.3f}")}<td class="{verdict}">{verdict}</td></tr>'
        )
    missing = c.get("no_data") or []
    note = f"<p>No power data for: {escape(', '.join(missing))}.</p>" if missing else ""
    return (
        '<h2>Compliance</h2><table class="compliance">'
        + head
        + "".join(rows)
        + "</table>"
        + '<table class="metrics">'
        + "".join(metrics)
        + "</table>"
        + note
    )


def _summary(r: EventResponse) -> str:
    ev = r.event
    items = [
        ("start", iso(ev["start"])),
        ("end", iso(ev["end"]) if ev.get("end") is not None else "still going on"),
        ("duration", f"{ev['duration_s']:.2f} s" if ev.get("duration_s") is not None else "-"),
        ("direction", str(ev.get("direction"))),
        ("trigger", str(ev.get("trigger"))),
        ("nadir", f"{ev['nadir_hz']:.4f} Hz" if ev.get("nadir_hz") is not None else "-"),
        ("zenith", f"{ev['zenith_hz']:.4f} Hz" if ev.get("zenith_hz") is not None else "-"),
        ("largest ROCOF",
         f"{ev['max_rocof_hz_s']:+.3f} Hz/s" if ev.get("max_rocof_hz_s") is not None else "-"),
        ("verdict", str(ev.get("verdict"))),
        ("detected by", str(ev.get("source"))),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    return f'<table class="event">{rows}</table>'


def _characteristics(r: EventResponse) -> str:
    rows = []
    for u in r.units.values():
        ch = u.characteristic
        if ch is None:
            rows.append(f"<tr><td>{escape(u.unit)}</td><td colspan=4>none</td>"
                        f"<td>{escape(u.characteristic_from)}</td></tr>")  # fmt: skip
            continue
        # With a knee the droop is unused: the knee's points are the characteristic.
        droop = (
            f"<td>knee {ch.knee_percent:g} % at {ch.knee_hz:g} Hz, 100 % at {ch.full_hz:g} Hz</td>"
            if ch.knee_hz > 0
            else _num_cell(ch.droop_percent)
        )
        rows.append(
            f"<tr><td>{escape(u.unit)}</td>{_num_cell(ch.rated_kw)}{droop}"
            f"<td>{ch.deadband_low_hz:g} - {ch.deadband_high_hz:g} Hz</td>"
            f"{_num_cell(u.baseline_kw)}<td>{escape(u.characteristic_from)}</td></tr>"
        )
    head = ("<tr><th>unit</th><th>share kW</th><th>droop %</th><th>deadband</th>"
            "<th>baseline kW</th><th>from</th></tr>")  # fmt: skip
    return '<table class="characteristics">' + head + "".join(rows) + "</table>"


def render(r: EventResponse, *, history: str = "", site: str = "") -> str:
    """The HTML page of :class:`EventResponse` ``r``."""
    number = r.event["number"]
    title = f"Frequency event {number}" + (f" - {site}" if site else "")
    figures = "".join(f"<figure>{c}</figure>" for c in _charts(r))
    start, end = r.window
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{escape(title)}</h1>
<p class="note">From the history {escape(history)}; window {escape(iso(start))} to
{escape(iso(end))} (UTC). Power: positive = discharge.</p>
{_summary(r)}
<h2>Frequency and response</h2>
<p class="note">Response is the change from each unit's baseline (its mean measured power
over the grid's <code>baseline_s</code> before the event start, 1 s by default).
Measured: telemetry power; decided: the field controller's droop response; expected
droop: the characteristic below applied to the frequency each unit acted on, limited
to plus or minus its share.</p>
{figures}
<h2>Droop characteristics</h2>
{_characteristics(r)}
{_compliance(r)}
</body></html>
"""
