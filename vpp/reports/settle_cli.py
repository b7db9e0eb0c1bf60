"""``vpp settle DAY``: the settlement statement of one IST day from the site's history.

Writes ``settlement-DAY.csv`` (the ledger, one row per block with a schedule; columns
:data:`~vpp.orchestrator.market.settlement.LEDGER_COLUMNS`, figures exact) and
``settlement-DAY.html`` (totals, charts, the DSM table and the ledger) into ``--out``
(default: the current directory), and prints the day's totals. The history is
``--history FILE`` or that of ``--config SITE`` (the embedded site's without either); the
DSM rates, bands, reserve tariff and meter are those of ``--dsm FILE`` (YAML of the
fields of :class:`~vpp.orchestrator.market.dsm.DsmConfig`), else the site's ``dsm``
section (with ``--config``, or the embedded site without ``--history``), else the
defaults. No history, no schedule for the day, a day that cannot be read, a bad DSM file
or site config, a meter without telemetry: one line and exit 2.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from vpp.errors import ConfigError, HistoryError

__all__ = ["add_parser", "load_dsm", "parse_day"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``settle`` to the ``vpp`` parser."""
    p = sub.add_parser("settle", help="the settlement statement of an IST day (CSV and HTML)")
    p.add_argument("day", help="the IST delivery day, YYYY-MM-DD")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--history", default=None, help="SQLite history file (default: config's)")
    src.add_argument("--config", default=None, help="site YAML whose history to read")
    p.add_argument("--dsm", default=None,
                   help="YAML of the DSM rates, bands and reserve tariff (DsmConfig; default: "
                   "the site's dsm section)")  # fmt: skip
    p.add_argument("--out", default=".", help="directory for the CSV and HTML (default: .)")
    p.set_defaults(func=_cmd_settle)


def parse_day(text: str) -> date:
    """The IST day of ``text`` (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(f"cannot read the day {text!r}: give YYYY-MM-DD (IST)") from None


def load_dsm(path: str | None, site: str | None = None, use_site: bool = False) -> Any:
    """The :class:`DsmConfig` of the YAML file ``path``; without it, with ``use_site``, the
    ``dsm`` section of the site config ``site`` (the embedded site's when None); else the
    defaults."""
    import yaml
    from pydantic import ValidationError

    from vpp.orchestrator.market.settlement import DsmConfig

    if path is None:
        if not use_site:
            return DsmConfig()
        from vpp.config import load

        return load(site).dsm
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return DsmConfig.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def _cmd_settle(args: argparse.Namespace) -> int:
    from vpp.orchestrator.market.settlement import LEDGER_COLUMNS, settle_day, totals
    from vpp.reports.cli import _history_path
    from vpp.reports.query import HistoryReader
    from vpp.reports.statement import render
    from vpp.reports.tables import to_csv

    day = parse_day(args.day)
    # The site's table goes with the site's history: --history alone is a bare file.
    config = load_dsm(args.dsm, args.config, use_site=args.history is None)
    with HistoryReader(_history_path(args)) as reader:
        ledger = settle_day(reader, day, config)
        path = reader.path
    total = totals(ledger)
    out = Path(args.out)
    csv_file = out / f"settlement-{day.isoformat()}.csv"
    html_file = out / f"settlement-{day.isoformat()}.html"
    try:
        out.mkdir(parents=True, exist_ok=True)
        csv_file.write_text(to_csv([b.row() for b in ledger], LEDGER_COLUMNS), encoding="utf-8")
        html_file.write_text(render(ledger, total, day, config=config, history=path),
                             encoding="utf-8")  # fmt: skip
    except OSError as exc:
        raise HistoryError(f"cannot write to {out}: {exc.strerror}") from None
    print(f"vpp settle {day.isoformat()} (IST): {total.blocks} blocks; scheduled "
          f"{total.scheduled_mwh:.4f} MWh, actual {total.actual_mwh:.4f} MWh, deviation "
          f"{total.deviation_mwh:+.4f} MWh; DSM charge Rs {total.dsm_charge_rs:.2f} "
          f"(+ payable), market revenue Rs {total.market_revenue_rs:.2f}, reserve Rs "
          f"{total.reserve_rs:.2f}, net Rs {total.net_rs:.2f}")  # fmt: skip
    print(f"wrote {csv_file} and {html_file}")
    return 0
