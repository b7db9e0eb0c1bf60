"""``vpp ctl``: read and command a running site over its bus, as an identity.

``vpp ctl`` finds the site ``vpp run`` started from the same configuration (``--config``;
default the embedded site) through its run directory's ``site.json``
(:mod:`vpp.orchestrator.site_client`), and sends each command with the Curve key of
``--as`` (default ``operator``) from the site's keys directory. Each process decides and
audits by that key: ``--as viewer`` may read, not command.

Output: aligned tables, or one JSON document with ``--json``. Exit status: 0 done; 1 the
site refused or failed the command, or did not answer (one line on stderr: what, the
refusal kind, the reason); 2 a usage error, no running site, or no key for the identity.
See docs/ctl.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vpp import ctl_format as fmt
from vpp.errors import CommandError, CommandTimeoutError, VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.site_client import SiteClient, find_site

__all__ = ["RefusedError", "add_parser"]

ACTIONS = ("enable", "disable", "emergency_stop", "reset_alarms")


class RefusedError(VppError):
    """The site refused or failed a command (exit 1); ``doc`` is what ``--json`` prints."""

    def __init__(self, what: str, ack: s.Ack) -> None:
        kind = ack.refused or "failed"
        super().__init__(f"{what}: refused ({kind}): {ack.error}")
        self.doc = {"ok": False, "command": what, "refused": kind, "error": ack.error}


Run = Callable[[SiteClient, argparse.Namespace], Awaitable[tuple[Any, str]]]
"""A subcommand: its JSON document and its human text."""


def _ok(ack: s.Ack, what: str) -> Any:
    if not ack.ok:
        raise RefusedError(what, ack)
    return ack.result


async def _ask(client: SiteClient, process: str, command: str, **params: Any) -> Any:
    ack = await client.call(process, command, params)
    return _ok(ack, f"{command} on {process}")


async def _unit(client: SiteClient, command: str, unit: str, **params: Any) -> Any:
    ack = await client.call_unit(command, unit, **params)
    return _ok(ack, f"{command} {unit} on {client.site.owner(unit)}")


async def _fields(client: SiteClient) -> dict[str, dict[str, Any]]:
    answers = await asyncio.gather(*(_ask(client, f, "status") for f in client.site.fields))
    return dict(zip(client.site.fields, answers, strict=True))


def _has(client: SiteClient, process: str) -> bool:
    return process in client.site.commands


# ---- reading ----


async def _status(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    site = client.site

    async def maybe(process: str, command: str, **params: Any) -> Any:
        return await _ask(client, process, command, **params) if _has(client, process) else None

    grid, market, campus, fields = await asyncio.gather(
        maybe("grid", "status"), maybe("market", "status"),
        maybe("campus", "fleet", levels=["campus"]), _fields(client),
    )  # fmt: skip
    doc = {"site": {"name": site.site, "pid": site.pid, "started": site.started,
                    "dir": str(site.dir), "config": site.config, "transport": site.transport},
           "grid": grid, "market": market, "campus": campus, "fields": fields}  # fmt: skip
    up = time.time() - site.started
    lines = [f"site {site.site}: pid {site.pid}, up {up:.0f} s, {site.transport} bus at {site.dir}"]
    if grid is not None:
        active = grid.get("active_event")
        ev = f"{active.get('direction')} event under way" if active else "no event under way"
        lines.append(f"grid:   {ev}; {grid.get('events')} event(s) finished; "
                     f"obligation {fmt.kw(grid.get('obligation_kw'))} kW, allocated "
                     f"{fmt.kw(grid.get('allocated_kw'))} kW")  # fmt: skip
    if market is not None:
        lines.append(f"market: {market.get('runs')} run(s), {market.get('bids')} bid(s), "
                     f"{fmt.num(market.get('accepted_mwh'), 2)} MWh accepted, delivered to "
                     f"campus: {fmt.num(market.get('delivered'))}")  # fmt: skip
    if campus is not None:
        online = sorted(f for f, st in campus.get("fields", {}).items() if st.get("online"))
        lines.append(f"campus: target {fmt.kw(campus.get('target_kw'))} kW "
                     f"({campus.get('target_source', '-')}); {campus.get('units')} unit(s); "
                     f"field controllers online: {', '.join(online) or 'none'}")  # fmt: skip
    lines += ["", fmt.table(fmt.UNIT_HEADERS, fmt.unit_rows(fields))]
    return doc, "\n".join(lines)


async def _units(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    fields = await _fields(client)
    return fields, fmt.table(fmt.UNIT_HEADERS, fmt.unit_rows(fields))


async def _events(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    events = await _ask(client, "grid", "events", limit=args.limit)
    return events, fmt.table(fmt.EVENT_HEADERS, fmt.event_rows(events))


async def _compliance(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    events = await _ask(client, "grid", "events", limit=args.limit)
    doc = [{"event": e.get("event"), "compliance": e.get("compliance")} for e in events]
    return doc, fmt.table(fmt.COMPLIANCE_HEADERS, fmt.compliance_rows(events))


async def _safety(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    recs = await _unit(client, "safety_history", args.unit, limit=args.limit)
    rows = [[fmt.clock(r.get("time")), str(r.get("code")), str(r.get("action")),
             str(r.get("detail"))] for r in recs]  # fmt: skip
    return recs, fmt.table(("TIME", "CODE", "ACTION", "DETAIL"), rows)


async def _bids(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    bids = await _ask(client, "market", "bids")
    rows = [[b["product"], b["delivery"], str(b["block"]), b["side"],
             " ".join(f"{st['volume_mw']:g}MW@{st['price_rs_mwh']:g}" for st in b["steps"]),
             b["bid_id"]] for b in [*bids.get("dam", []), *bids.get("rtm", [])]]  # fmt: skip
    return bids, fmt.table(("PRODUCT", "DELIVERY", "BLOCK", "SIDE", "STEPS_MW@RS/MWH", "BID"),
                           rows)


async def _results(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    res = await _ask(client, "market", "results")
    rows = [[a["product"], a["delivery"], str(a["block"]), a["side"],
             fmt.num(a["accepted_mw"], 1), fmt.num(a["clearing_price"], 0), a["bid_id"]]
            for a in res.get("awards", [])]  # fmt: skip
    text = fmt.table(("PRODUCT", "DELIVERY", "BLOCK", "SIDE", "ACCEPTED_MW", "PRICE_RS/MWH",
                      "BID"), rows)  # fmt: skip
    return res, text


async def _schedule(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    if args.set is not None:
        params = _read_schedule(Path(args.set), args.start, args.block_s)
        result = await _ask(client, "campus", "set_schedule", **params)
        return result, (f"campus schedule set: {result['blocks']} block(s) from "
                        f"{fmt.clock(result['start'])} to {fmt.clock(result['end'])}")
    market = await _ask(client, "market", "status") if _has(client, "market") else None
    campus = await _ask(client, "campus", "fleet", levels=[])
    doc = {"campus": {"target_kw": campus.get("target_kw"),
                      "target_source": campus.get("target_source"),
                      "schedules": campus.get("schedules", [])},
           "market": None if market is None else {
               "start": market.get("schedule_start"), "kw": market.get("schedule_kw"),
               "delivered": market.get("delivered")}}  # fmt: skip
    now = time.time()
    rows = []
    for sch in campus.get("schedules", []):
        for i, v in enumerate(sch["kw"]):
            t0 = sch["start"] + i * sch["block_s"]
            if t0 + sch["block_s"] <= now or (v == 0 and not args.all):
                continue
            rows.append([fmt.clock(t0), fmt.num(sch["block_s"], 0), fmt.kw(v)])
    head = (f"campus target now {fmt.kw(campus.get('target_kw'))} kW "
            f"({campus.get('target_source', '-')}); blocks to come"
            f"{'' if args.all else ' (non-zero)'}:")  # fmt: skip
    return doc, head + "\n" + fmt.table(("START", "BLOCK_S", "KW"), rows)


def _read_schedule(path: Path, start: str, block_s: float) -> dict[str, Any]:
    """A campus schedule from a JSON file ({start?, block_s?, kw: [...]}) or a CSV file of
    one kW value per block (a header line is skipped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", field="file") from None
    params: dict[str, Any] = {}
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{path}: not JSON: {exc}", field="file") from None
        if not isinstance(doc, dict):
            raise CommandError(f"{path}: expected an object with kw", field="file")
        params.update(doc)
    else:
        values: list[float] = []
        for n, row in enumerate(csv.reader(text.splitlines()), 1):
            if not row or not row[0].strip():
                continue
            try:
                values.append(float(row[-1]))
            except ValueError:
                if n == 1:
                    continue  # a header
                raise CommandError(f"{path}:{n}: not a number: {row[-1]!r}", field="kw") from None
        params["kw"] = values
    if "start" not in params:
        params["start"] = time.time() if start == "now" else _float(start, "--start")
    params.setdefault("block_s", block_s)
    return params


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"{what}: not a number: {text!r}", field=what) from None


# ---- commanding ----


async def _set_target(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    value = None if args.kw.lower() == "none" else _float(args.kw, "KW")
    params: dict[str, Any] = {"kw": value}
    if args.strategy is not None:
        params["strategy"] = args.strategy
    res = await _ask(client, "campus", "set_target", **params)
    target = "cleared" if res["target_kw"] is None else f"{fmt.kw(res['target_kw'])} kW"
    return res, f"campus target {target}"


async def _set_power(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    res = await _unit(client, "set_power", args.unit, kw=args.kw)
    return res, f"{res['unit']}: base power {fmt.kw(res['base_kw'])} kW"


async def _control(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    res = await _unit(client, "control", args.unit, action=args.action)
    extra = f" ({res['device']})" if res.get("device") else ""
    return res, f"{res['unit']}: {res['action']} done{extra}"


async def _participation(client: SiteClient, args: argparse.Namespace) -> tuple[Any, str]:
    if not 0.0 <= args.fraction <= 1.0:
        raise CommandError(f"FRACTION must be within [0, 1], got {args.fraction:g}",
                           field="fraction")  # fmt: skip
    p_max = args.fraction * client.site.rating_kw(args.unit)
    res = await _unit(client, "set_participation", args.unit, p_max_kw=p_max)
    return res, f"{res['unit']}: frequency response up to {fmt.kw(res['p_max_kw'])} kW"


def _main(args: argparse.Namespace) -> int:
    run: Run = args.ctl_run

    async def go() -> tuple[Any, str]:
        site = find_site(args.config)
        async with SiteClient(site, args.identity, timeout=args.timeout, retries=1) as client:
            return await run(client, args)

    try:
        doc, text = asyncio.run(go())
    except RefusedError as exc:
        if args.json:
            print(json.dumps(exc.doc, indent=2))
        print(f"vpp ctl: {exc}", file=sys.stderr)
        return 1
    except CommandTimeoutError as exc:
        print(f"vpp ctl: no answer: {exc}", file=sys.stderr)
        return 1
    except VppError as exc:
        print(f"vpp ctl: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2) if args.json else text)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ctl`` and its subcommands to the ``vpp`` parser's subcommands."""
    ctl = sub.add_parser("ctl", help="read and command a running site (see docs/ctl.md)")
    ctl.add_argument("--config", default=None, help="the site's YAML (default: embedded site)")
    ctl.add_argument("--as", dest="identity", default="operator",
                     help="identity whose key signs the commands (default operator)")
    ctl.add_argument("--json", action="store_true", help="print one JSON document")
    ctl.add_argument("--timeout", type=float, default=2.0,
                     help="seconds to wait for each answer (default 2; one retry)")
    cs = ctl.add_subparsers(dest="ctl_command", required=True)

    def cmd(name: str, run: Run, help: str) -> argparse.ArgumentParser:
        p = cs.add_parser(name, help=help)
        p.set_defaults(func=_main, ctl_run=run)
        return p

    cmd("status", _status, "the whole site: grid, market, campus, every unit")
    cmd("units", _units, "every unit's state")
    p = cmd("set-target", _set_target, "the campus target (kW, + = discharge; 'none' clears)")
    p.add_argument("kw", metavar="KW")
    p.add_argument("--strategy", default=None, help="dispatch strategy for this target")
    p = cmd("set-power", _set_power, "a unit's base power (kW, + = discharge)")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("kw", metavar="KW", type=float)
    p = cmd("control", _control, "enable, disable, emergency_stop or reset_alarms a unit")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("action", choices=ACTIONS)
    p = cmd("schedule", _schedule, "the campus schedule; --set FILE sends one")
    p.add_argument("--set", metavar="FILE", default=None,
                   help="a schedule to send: JSON {start, block_s, kw} or CSV of kW per block")
    p.add_argument("--start", default="now", help="--set: UNIX start time (default now)")
    p.add_argument("--block-s", type=float, default=900.0, help="--set: block length (900)")
    p.add_argument("--all", action="store_true", help="show zero blocks too")
    p = cmd("participation", _participation,
            "a unit's share of the frequency response, as a fraction of its rating")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("fraction", metavar="FRACTION", type=float)
    p = cmd("events", _events, "finished frequency events")
    p.add_argument("--limit", type=int, default=20, help="the last N (default 20)")
    p = cmd("compliance", _compliance, "compliance verdicts of recent events")
    p.add_argument("--limit", type=int, default=20, help="the last N events (default 20)")
    p = cmd("safety-history", _safety, "a unit's safety envelope violations")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("--limit", type=int, default=100, help="the last N (default 100)")
    cmd("bids", _bids, "the market's bids (last day-ahead run and RTM session)")
    cmd("results", _results, "what the exchange awarded the last day-ahead bids")
