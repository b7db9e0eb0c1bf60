"""The outputs of a run: per case a CSV and a COMTRADE record, per run an HTML report
and a JUnit XML file (docs/hil.md, "Outputs").

The HTML is one self-contained file (inline SVG from :mod:`vpp.reports.svg`, no
script): a summary table, then per case its pass/fail table (criterion, measured figure,
limit, verdict) and plots of frequency, ROCOF, expected against measured response with
the setpoint and the envelope, and the safety state with the SOC. The JUnit file has one
``testsuite`` for the plan and one ``testcase`` per case, a ``failure`` per failed
criterion naming it with its figure and limit.
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from vpp.hil.comtrade import AnalogChannel, write_comtrade
from vpp.hil.criteria import CaseResult
from vpp.hil.plan import Plan, Procedure
from vpp.hil.runner import ACTIONS, CaseRecord
from vpp.reports.svg import Level, Series, line_chart

#: The verdict of a criterion the target's record cannot decide (never a pass).
NOT_JUDGED = "NOT JUDGED"

__all__ = [
    "NOT_JUDGED",
    "CaseOutcome",
    "format_table",
    "write_case_files",
    "write_html",
    "write_junit",
]


@dataclass(frozen=True)
class CaseOutcome:
    """One case run: its record, verdict and procedure."""

    record: CaseRecord
    result: CaseResult
    procedure: Procedure


def write_case_files(out_dir: Path, o: CaseOutcome) -> list[Path]:
    """``CASE.csv`` (every column and the expected response) and ``CASE.cfg``/``.dat``
    (COMTRADE) in ``out_dir``."""
    rec, exp = o.record, o.result.expected_kw
    path = out_dir / f"{rec.name}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*rec.columns, "expected_kw"])
        for row, e in zip(rec.rows, exp, strict=True):
            w.writerow([f"{v:.6g}" for v in (*row, e)])
    if not rec.rows:
        return [path]  # a case not run: no COMTRADE record of nothing
    t = rec.column("t_s")
    channels = [
        AnalogChannel("freq", "Hz", rec.column("freq_hz")),
        AnalogChannel("rocof", "Hz/s", rec.column("rocof_hz_s")),
        AnalogChannel("setpoint", "kW", rec.column("setpoint_kw")),
        AnalogChannel("measured", "kW", rec.column("measured_kw")),
        AnalogChannel("expected", "kW", exp),
        AnalogChannel("envelope_max", "kW", rec.column("max_kw")),
        AnalogChannel("envelope_min", "kW", rec.column("min_kw")),
        AnalogChannel("soc", "%", rec.column("soc_pct")),
    ]
    # A procedure's own columns (an AGC case's set-point, the campus's offset...).
    channels += [AnalogChannel(name.rsplit("_", 1)[0], _UNITS.get(name.rsplit("_", 1)[-1], ""),
                               rec.column(name)) for name in rec.extra_columns]  # fmt: skip
    action = rec.column("action")
    limited = [int(a > 0) for a in np.nan_to_num(action)]
    cfg, dat = write_comtrade(
        out_dir / rec.name,
        station=f"vpp hil {rec.name}",
        device="vpp-field-sim" if rec.target == "simulated" else "vpp-hil-device",
        start_unix_s=rec.start_unix_s + float(t[0]) if t.size else rec.start_unix_s,
        times_s=t,
        analog=channels,
        status=[("safety_active", limited)],
        trigger_s=-float(t[0]) if t.size else 0.0,
    )
    return [path, cfg, dat]


#: The unit of an extra column, by its name's suffix.
_UNITS = {"kw": "kW", "pct": "%", "mw": "MW", "hz": "Hz", "s": "s"}


def _figure(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f}"


def format_table(outcomes: Sequence[CaseOutcome]) -> str:
    """The pass/fail table of a run as text (one row per criterion)."""
    rows = [("case", "criterion", "measured", "limit", "verdict")]
    for o in outcomes:
        for c in o.result.criteria:
            rows.append((o.record.name, c.name, _figure(c.value), f"{c.limit:g}",
                         "PASS" if c.passed else "FAIL"))  # fmt: skip
        for nj in o.result.not_judged:
            rows.append((o.record.name, nj.name, "-", "-", NOT_JUDGED))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    # A case not run has no figures: its reason is the only thing to read.
    lines += [f"{o.record.name}: not run: {o.record.not_run}" for o in outcomes
              if o.record.not_run is not None]  # fmt: skip
    return "\n".join(lines)


def write_junit(path: Path, plan: Plan, outcomes: Sequence[CaseOutcome]) -> None:
    """One testsuite (the plan), one testcase per case, a failure per failed criterion."""
    failures = sum(not o.result.passed for o in outcomes)
    total = sum(o.record.wall_s for o in outcomes)
    suite = ET.Element("testsuite", name=plan.name, tests=str(len(outcomes)),
                       failures=str(failures), errors="0", time=f"{total:.3f}")  # fmt: skip
    for o in outcomes:
        tc = ET.SubElement(suite, "testcase", name=o.record.name,
                           classname=f"{plan.name}.{o.procedure.name}",
                           time=f"{o.record.wall_s:.3f}")  # fmt: skip
        for c in o.result.criteria:
            if not c.passed:
                fail = ET.SubElement(
                    tc,
                    "failure",
                    type=c.name,
                    message=f"{c.name}: {_figure(c.value)} (limit {c.limit:g})",
                )
                fail.text = c.reason
        props = ET.SubElement(tc, "properties")
        for c in o.result.criteria:
            ET.SubElement(props, "property", name=c.name, value=_figure(c.value))
        for nj in o.result.not_judged:
            ET.SubElement(props, "property", name=nj.name, value=f"not judged: {nj.reason}")
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


_CSS = """body{font-family:sans-serif;margin:2em;max-width:60em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.2em .6em}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.nj{color:#8a6d00;font-weight:bold}"""


def _verdict(ok: bool) -> str:
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def _case_html(o: CaseOutcome) -> str:
    rec, res, proc = o.record, o.result, o.procedure
    t = list(rec.column("t_s"))
    c = proc.characteristic
    parts = [
        f'<h2 id="{escape(rec.name)}">{escape(rec.name)} {_verdict(res.passed)}</h2>',
        f"<p>Procedure <b>{escape(proc.title)}</b> ({escape(proc.name)}). "
        f"Source: {escape(proc.source)}. {len(rec.rows)} frames in {rec.wall_s:.1f} s."
        + "".join(f" Note: {escape(n)}." for n in rec.notes)
        + "</p>",
        "<table><tr><th>criterion</th><th>measured</th><th>limit</th><th>verdict</th>"
        "<th>detail</th></tr>",
    ]
    for cr in res.criteria:
        parts.append(
            f"<tr><td>{escape(cr.name)}</td><td>{_figure(cr.value)}</td><td>{cr.limit:g}</td>"
            f"<td>{_verdict(cr.passed)}</td><td>{escape(cr.reason)}</td></tr>"
        )
    for nj in res.not_judged:
        parts.append(
            f"<tr><td>{escape(nj.name)}</td><td>-</td><td>-</td>"
            f'<td><span class="nj">{NOT_JUDGED}</span></td><td>{escape(nj.reason)}</td></tr>'
        )
    parts.append("</table>")
    if not rec.rows:
        return "\n".join(parts)
    mark = [("event", res.event_start_s)]
    parts.append(line_chart(
        "Frequency", [Series("frequency", t, list(rec.column("freq_hz")))], y_label="Hz",
        levels=[Level("deadband low", c.deadband_low_hz),
                Level("deadband high", c.deadband_high_hz)],
        marks=mark,
    ))  # fmt: skip
    parts.append(line_chart(
        "ROCOF (the pipeline's)", [Series("ROCOF", t, list(rec.column("rocof_hz_s")))],
        y_label="Hz/s", marks=mark,
    ))  # fmt: skip
    parts.append(line_chart(
        "Response", [
            Series("expected", t, list(res.expected_kw), "#999999", "6,4"),
            Series("setpoint", t, list(rec.column("setpoint_kw")), "#e08a00"),
            Series("measured", t, list(rec.column("measured_kw")), "#1f5fa8"),
            Series("envelope max", t, list(rec.column("max_kw")), "#c62828", "2,3"),
            Series("envelope min", t, list(rec.column("min_kw")), "#7b1fa2", "2,3"),
        ], y_label="kW", marks=mark,
    ))  # fmt: skip
    if "agc_setpoint_kw" in rec.extra_columns:
        parts.append(line_chart(
            "AGC: set-point and response (sums over the units)", [
                Series("set-point in force", t, list(rec.column("agc_setpoint_kw")), "#000000"),
                Series("obligation (+ baseline)", t, list(res.expected_kw), "#999999", "6,4"),
                Series("campus offset", t, list(rec.column("campus_offset_kw")), "#7b1fa2", "2,3"),
                Series("units' setpoints", t, list(rec.column("setpoint_kw")), "#e08a00"),
                Series("measured", t, list(rec.column("measured_kw")), "#1f5fa8"),
            ], y_label="kW", marks=mark,
        ))  # fmt: skip
    parts.append(line_chart(
        "Safety state (" + ", ".join(f"{i} {a}" for i, a in enumerate(ACTIONS)) + ") and SOC",
        [Series("action", t, list(rec.column("action")), "#c62828"),
         Series("SOC / 10 %", t, list(rec.column("soc_pct") / 10.0), "#1a7f37")],
        y_label="", marks=mark,
    ))  # fmt: skip
    return "\n".join(parts)


def _target_text(plan: Plan) -> str:
    dev = plan.device
    if dev is None:
        return ("the project's field controller, the BESS simulator over Modbus TCP, a "
                "C37.118 PMU server, on loopback, in real time")  # fmt: skip
    m, pmu = dev.meter, dev.pmu
    if m.protocol == "sunspec":
        soc = f", SOC of model {m.soc_model}" if m.soc_model else ", no SOC"
        points = f"SunSpec, power of model {m.power_model}{soc}"
    else:
        soc = f", SOC point {m.soc_point!r}" if m.soc_point else ", no SOC point"
        points = f"point {m.power_point!r} of {m.register_map}{soc}"
    data = "" if pmu.transport == "tcp" else f", the data over UDP to {pmu.udp_host}:{pmu.udp_port}"
    return (
        f"a device reached through its protocols: the harness serves C37.118 over TCP at "
        f"{pmu.host}:{pmu.port} (IDCODE {pmu.idcode}){data} and reads Modbus TCP "
        f"{m.host}:{m.port} unit {m.device_id}, {points}, every {m.poll_s:g} s; a device "
        "shows no setpoint, envelope or safety action: the criteria that need them are "
        "not judged"
    )


def write_html(path: Path, plan: Plan, outcomes: Sequence[CaseOutcome]) -> None:
    """The run's HTML report (see the module docstring)."""
    passed = all(o.result.passed for o in outcomes)
    head = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>HIL {escape(plan.name)}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>HIL plan {escape(plan.name)} {_verdict(passed)}</h1>",
        f"<p>Target: {escape(plan.target)} ({escape(_target_text(plan))}). "
        f"Unit: {plan.unit.rated_kw:g} kW, {plan.unit.capacity_kwh:g} kWh.</p>",
        "<table><tr><th>case</th><th>procedure</th><th>verdict</th><th>failed criteria</th></tr>",
    ]
    for o in outcomes:
        failed = ", ".join(c.name for c in o.result.criteria if not c.passed) or "-"
        head.append(
            f"<tr><td><a href='#{escape(o.record.name)}'>{escape(o.record.name)}</a></td>"
            f"<td>{escape(o.procedure.name)}</td><td>{_verdict(o.result.passed)}</td>"
            f"<td>{escape(failed)}</td></tr>"
        )
    head.append("</table>")
    body = [_case_html(o) for o in outcomes]
    path.write_text("\n".join([*head, *body, "</body></html>"]), encoding="utf-8")
