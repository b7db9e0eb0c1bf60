"""The day's settlement statement as one self-contained HTML page (no script, no network):
the totals, inline SVG charts per block (scheduled against actual energy, the deviation
in %, the DSM charge against the market revenue), the DSM table applied, and the ledger
(:mod:`vpp.orchestrator.market.settlement`) one row per block.

Each figure of the ledger table also carries its exact value in ``data-value`` (the shown
text is rounded), so that a program can read the statement back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape

from vpp.orchestrator.market.settlement import (
    LEDGER_COLUMNS,
    Block,
    DsmConfig,
    Totals,
)
from vpp.reports import svg

__all__ = ["render"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.payable td { background: #fbe3e3; }
p.note { color: #555; font-size: 90%; }
"""

_HEADINGS = {
    "block": "block", "start": "start (UNIX s)", "start_ist": "start (IST)",
    "market_mwh": "market MWh", "instructed_mwh": "AGC instructed MWh",
    "scheduled_mwh": "scheduled MWh", "actual_mwh": "actual MWh",
    "deviation_mwh": "deviation MWh", "deviation_pct": "deviation %",
    "normal_rate_rs_mwh": "normal rate Rs/MWh", "rate_source": "rate from",
    "dsm_charge_rs": "DSM charge Rs (+ payable)", "market_revenue_rs": "market revenue Rs",
    "reserved_up_mw": "reserve up MW", "reserved_down_mw": "reserve down MW",
    "regulation_up_mwh": "regulation up MWh", "regulation_down_mwh": "regulation down MWh",
    "reserve_availability_rs": "reserve availability Rs",
    "reserve_energy_rs": "reserve energy Rs", "reserve_rs": "reserve Rs", "net_rs": "net Rs",
    "coverage_pct": "metered %",
}  # fmt: skip
_FORMATS = {
    "block": "{:d}", "deviation_pct": "{:+.2f}", "coverage_pct": "{:.1f}",
    "normal_rate_rs_mwh": "{:.2f}",
}  # fmt: skip


def _cell(column: str, value: object) -> str:
    if value is None:
        return '<td class="num"></td>'
    if isinstance(value, str):
        return f"<td>{escape(value)}</td>"
    if column == "start":
        return f'<td class="num">{value:.0f}</td>'
    fmt = _FORMATS.get(column, "{:.2f}" if column.endswith("_rs") else "{:.4f}")
    return f'<td class="num" data-value="{value!r}">{fmt.format(value)}</td>'


def _ledger(ledger: Sequence[Block]) -> str:
    columns = [c for c in LEDGER_COLUMNS if c != "start"]
    head = "<tr>" + "".join(f"<th>{escape(_HEADINGS[c])}</th>" for c in columns) + "</tr>"
    rows = []
    for b in ledger:
        row = b.row()
        cls = ' class="payable"' if b.dsm_charge_rs > 0 else ""
        rows.append(f"<tr{cls}>" + "".join(_cell(c, row[c]) for c in columns) + "</tr>")
    return '<table class="ledger">' + head + "".join(rows) + "</table>"


def _totals(t: Totals) -> str:
    items = [
        ("blocks settled", f"{t.blocks}"),
        ("scheduled MWh", f"{t.scheduled_mwh:.4f}"),
        ("actual MWh", f"{t.actual_mwh:.4f}"),
        ("deviation MWh", f"{t.deviation_mwh:+.4f}"),
        ("DSM charge Rs (+ payable)", f"{t.dsm_charge_rs:.2f}"),
        ("market revenue Rs", f"{t.market_revenue_rs:.2f}"),
        ("reserve Rs", f"{t.reserve_rs:.2f}"),
        ("net Rs", f"{t.net_rs:.2f}"),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td class='num'>{v}</td></tr>" for k, v in items)
    return f'<table class="totals">{rows}</table>'


def _bands(config: DsmConfig) -> str:
    rows = []
    for side, bands in (("under-injection (payable)", config.under_injection),
                        ("over-injection (receivable)", config.over_injection)):  # fmt: skip
        lower = 0.0
        for b in bands:
            upper = "" if b.up_to_pct is None else f"{b.up_to_pct:g}"
            rows.append(
                f"<tr><td>{side}</td><td class='num'>{lower:g}</td>"
                f"<td class='num'>{upper}</td><td class='num'>{b.multiplier:g}</td></tr>"
            )
            lower = b.up_to_pct or lower
    head = "<tr><th>side</th><th>from %</th><th>to %</th><th>x normal rate</th></tr>"
    note = (
        f"<p class='note'>Normal rate: the highest clearing price of "
        f"{', '.join(config.rate_products)} in the block, capped at "
        f"{config.rate_cap_rs_mwh:g} Rs/MWh; no charge up to {config.tolerance_pct:g} % "
        f"(tolerance); percent base at least {config.min_base_mw:g} MW x 0.25 h.</p>"
    )
    r = config.reserve
    meter = f"the meter {config.meter!r}" if config.meter else "the sum of the units"
    note += (
        f"<p class='note'>Actual energy: {escape(meter)}. Reserve: availability Rs "
        f"{r.capacity_up_rs_mw_h:g} per MW up and Rs {r.capacity_down_rs_mw_h:g} per MW down "
        f"per hour held; energy Rs {r.energy_up_rs_mwh:g}/MWh up and Rs "
        f"{r.energy_down_rs_mwh:g}/MWh down. AGC instructions count as schedule.</p>"
    )
    return '<table class="bands">' + head + "".join(rows) + "</table>" + note


def _charts(ledger: Sequence[Block]) -> list[str]:
    hours = [b.block * 0.25 for b in ledger]
    x = "hour of the day (IST), block start"
    return [
        svg.line_chart("Energy per block", [
            svg.Series("scheduled", hours, [b.scheduled_mwh for b in ledger], "#1f5fa8"),
            svg.Series("actual", hours, [b.actual_mwh for b in ledger], "#c05a00", "5 3"),
        ], y_label="MWh", x_label=x),
        svg.line_chart("Deviation", [
            svg.Series("deviation %", hours,
                       [math.nan if b.deviation_pct is None else b.deviation_pct for b in ledger],
                       "#7a1fa8"),
        ], y_label="% of schedule", x_label=x, levels=[svg.Level("0", 0.0)]),
        svg.line_chart("Charges and revenue", [
            svg.Series("DSM charge (+ payable)", hours, [b.dsm_charge_rs for b in ledger],
                       "#a11d1d"),
            svg.Series("market revenue", hours, [b.market_revenue_rs for b in ledger],
                       "#1d6b2a", "5 3"),
            svg.Series("reserve", hours, [b.reserve_rs for b in ledger], "#1f5fa8", "2 2"),
        ], y_label="Rs", x_label=x, levels=[svg.Level("0", 0.0)]),
    ]  # fmt: skip


def render(ledger: Sequence[Block], totals: Totals, day: date, *, config: DsmConfig,
           history: str = "") -> str:  # fmt: skip
    """The statement of ``day`` as an HTML page."""
    title = f"Settlement statement {day.isoformat()} (IST)"
    figures = "".join(f"<figure>{c}</figure>" for c in _charts(ledger))
    source = f"<p class='note'>History: {escape(history)}</p>" if history else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{escape(title)}</h1>{source}
<h2>Totals</h2>{_totals(totals)}
<p class="note">Signs: DSM charge + = payable by the plant, - = receivable; revenue + =
received; net = revenue + reserve - DSM charge. Actual energy: measured power held
between samples. Scheduled energy: the market schedule plus the AGC instructions.</p>
{figures}
<h2>Deviation bands</h2>{_bands(config)}
<h2>Ledger</h2>{_ledger(ledger)}
</body></html>
"""
