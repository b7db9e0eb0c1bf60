"""``vpp history`` and ``vpp report``: questions to a site's history from the command line.

- ``vpp history events``: every frequency event with its verdict.
- ``vpp history unit UNIT --event N`` (or ``--from/--to``): what the unit did: its
  decisions and telemetry, one row each.
- ``vpp history fleet --event N``: the fleet's totals.
- ``vpp history commands [--from --to]``: the audited commands.
- ``vpp report event N [--out FILE.html]``: the HTML report of one event.

Each reads ``--history FILE``, or the history of ``--config SITE`` (the embedded site's
without either, as ``vpp run`` writes it). A table by default; ``--csv`` for CSV on
standard output, ``--out FILE`` to write it to a file. A question the history cannot
answer is a one-line error and exit 2 (:class:`~vpp.errors.HistoryError`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vpp.errors import HistoryError

__all__ = ["add_parser"]


def _sources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", default=None, help="SQLite history file (default: config's)")
    p.add_argument("--config", default=None, help="site YAML whose history to read")


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true", help="CSV instead of a table")
    p.add_argument("--out", default=None, help="write to this file instead of standard output")


def _span(p: argparse.ArgumentParser, *, event: bool = True) -> None:
    if event:
        p.add_argument("--event", type=int, default=None, help="the window of event N")
        p.add_argument(
            "--margin", type=float, default=5.0, help="seconds before and after the event (5)"
        )
    p.add_argument("--from", dest="start", default=None, help="ISO 8601 time or UNIX seconds")
    p.add_argument("--to", dest="end", default=None, help="ISO 8601 time or UNIX seconds")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``history`` and ``report`` and their subcommands to the ``vpp`` parser."""
    hist = sub.add_parser("history", help="query the site's history (events, units, commands)")
    hist_sub = hist.add_subparsers(dest="history_command", required=True)

    events = hist_sub.add_parser("events", help="the frequency events with their verdicts")
    _sources(events)
    _output(events)
    events.set_defaults(func=_cmd_events)

    unit = hist_sub.add_parser("unit", help="what one unit did (decisions and telemetry)")
    unit.add_argument("unit", help="the unit's id, e.g. bess-1")
    _sources(unit)
    _span(unit)
    _output(unit)
    unit.set_defaults(func=_cmd_unit)

    fleet = hist_sub.add_parser("fleet", help="the fleet's power, response and setpoint totals")
    _sources(fleet)
    _span(fleet)
    _output(fleet)
    fleet.set_defaults(func=_cmd_fleet)

    cmds = hist_sub.add_parser("commands", help="the audited commands")
    _sources(cmds)
    _span(cmds)
    _output(cmds)
    cmds.set_defaults(func=_cmd_commands)

    rep = sub.add_parser("report", help="write reports from the site's history")
    rep_sub = rep.add_subparsers(dest="report_command", required=True)
    ev = rep_sub.add_parser("event", help="an HTML report of frequency event N")
    ev.add_argument("number", type=int, help="the event's number (vpp history events)")
    _sources(ev)
    ev.add_argument("--out", default=None, help="HTML file (default: event-N.html)")
    ev.add_argument(
        "--margin", type=float, default=5.0, help="seconds before and after the event (5)"
    )
    ev.set_defaults(func=_cmd_report_event)


def _site(args: argparse.Namespace) -> Any:
    """The site configuration of ``--config`` (None without it)."""
    if args.config is None:
        return None
    from vpp.config import load

    return load(args.config)


def _history_path(args: argparse.Namespace) -> str:
    if args.history is not None:
        return str(args.history)
    from vpp.config import load

    # Where `vpp run` with the same config writes (the embedded site's without one).
    return str(load(args.config).history.path)


def _reader(args: argparse.Namespace) -> Any:
    from vpp.reports.query import HistoryReader

    return HistoryReader(_history_path(args))


def _asked(args: argparse.Namespace) -> dict[str, Any]:
    # What the options ask of HistoryReader.time_range, its errors in the options' words.
    return {"event": getattr(args, "event", None), "start": args.start, "end": args.end,
            "margin_s": getattr(args, "margin", 5.0), "what": ("--event", "--from", "--to")}


def _emit(args: argparse.Namespace, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> int:
    from vpp.reports.tables import format_table, to_csv

    text = to_csv(rows, columns) if args.csv else format_table(rows, columns)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise HistoryError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


def _cmd_events(args: argparse.Namespace) -> int:
    from vpp.reports.query import EVENT_COLUMNS

    with _reader(args) as reader:
        return _emit(args, reader.events(), EVENT_COLUMNS)


def _cmd_unit(args: argparse.Namespace) -> int:
    from vpp.reports.query import UNIT_COLUMNS

    with _reader(args) as reader:
        rows = reader.unit_rows(args.unit, *reader.closed_range(**_asked(args)))
        return _emit(args, rows, UNIT_COLUMNS)


def _cmd_fleet(args: argparse.Namespace) -> int:
    from vpp.reports.query import FLEET_COLUMNS

    with _reader(args) as reader:
        return _emit(args, reader.fleet_rows(*reader.closed_range(**_asked(args))),
                     FLEET_COLUMNS)


def _cmd_commands(args: argparse.Namespace) -> int:
    from vpp.reports.query import COMMAND_COLUMNS

    with _reader(args) as reader:
        start, end = reader.time_range(**_asked(args))
        return _emit(args, reader.commands(start, end), COMMAND_COLUMNS)


def _cmd_report_event(args: argparse.Namespace) -> int:
    from vpp.reports.event_report import render
    from vpp.reports.response import event_response

    site = _site(args)
    out = Path(args.out or f"event-{args.number}.html")
    with _reader(args) as reader:
        response = event_response(reader, args.number, margin_s=args.margin, site=site)
        html = render(response, history=reader.path, site=site.site.name if site else "")
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise HistoryError(f"cannot write {out}: {exc.strerror}") from None
    ev = response.event
    print(f"vpp report event: wrote {out} (event {ev['number']}, {ev['direction']}, "
          f"verdict {ev['verdict']})")  # fmt: skip
    return 0
