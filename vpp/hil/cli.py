"""``vpp hil run PLAN.yaml``: run a hardware-in-the-loop test plan (docs/hil.md).

Prints the pass/fail table; writes the HTML report, the JUnit XML and per case a CSV and
a COMTRADE record in ``--out`` (default ``hil-out/PLAN-NAME``). Exit code 0 when every
case passes, 1 when one fails, 2 on a bad plan (one line on standard error, through
``vpp.cli.main``'s handling of :class:`~vpp.errors.ConfigError`).

Kept light at import (the ``vpp`` parser imports it): the harness, numpy and the
simulators are imported by the command only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hil`` and its subcommands to the ``vpp`` parser."""
    hil = sub.add_parser("hil", help="hardware-in-the-loop test plans")
    hil_sub = hil.add_subparsers(dest="hil_command", required=True)
    run = hil_sub.add_parser("run", help="run a test plan; exit 1 if a case fails")
    run.add_argument("plan", type=Path, help="the plan's YAML file")
    run.add_argument(
        "--out", type=Path, default=None, help="output directory (default hil-out/PLAN-NAME)"
    )
    run.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from vpp.hil.harness import run_plan
    from vpp.hil.report import format_table

    result = run_plan(args.plan, args.out)
    plan = result.plan
    print(format_table(result.outcomes))
    verdict = "PASS" if result.passed else "FAIL"
    failed = sum(not o.result.passed for o in result.outcomes)
    print(
        f"vpp hil run: {plan.name}: {verdict} ({len(result.outcomes) - failed}/"
        f"{len(result.outcomes)} cases passed) in {result.wall_s:.1f} s; "
        f"report {result.html}, JUnit {result.junit}"
    )
    return 0 if result.passed else 1
