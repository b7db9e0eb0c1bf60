"""``vpp bench --commission [--config SITE] [--record FILE] [--quick] [--json]``.

Prints the real-time settings (with what to change), each figure beside its requirement
with pass/fail, and the verdict; writes the JSON record (default
``vpp-commissioning-HOST-TIME.json`` in the current directory); exits 1 when a
requirement is missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from typing import TextIO

from vpp.commission.suite import Commissioning, run_commission

__all__ = ["print_report", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the commissioning suite for ``args`` (see the module docstring)."""
    from vpp.config import load

    site = load(args.config)
    names = getattr(args, "names", None)
    if names:
        print("vpp bench: benchmark names are ignored with --commission", file=sys.stderr)

    def say(text: str) -> None:
        print(f"# {text} ...", file=sys.stderr, flush=True)

    result = run_commission(site, quick=args.quick, log=say)
    record = result.record()
    path = Path(args.record) if args.record else _default_record_path()
    path.write_text(json.dumps(record, indent=2) + "\n")
    if args.json:
        json.dump(record, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(result)
    print(f"vpp bench: commissioning record written to {path}", file=sys.stderr)
    return 0 if result.passed else 1


def _default_record_path() -> Path:
    now = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    return Path(f"vpp-commissioning-{platform.node() or 'host'}-{now}.json")


def print_report(result: Commissioning, out: TextIO = sys.stdout) -> None:
    """The settings, the figures and the verdict as aligned plain text."""
    print("real-time settings", file=out)
    for s in result.settings:
        line = f"  {s.status.upper():8} {s.name:18} {s.value}"
        print(line, file=out)
        if s.advice and s.status != "ok":
            print(f"           -> {s.advice}", file=out)
    print("", file=out)
    rows = [["figure", "value", "unit", "required", "ok", "beside"]]
    for f in result.figures:
        ok = "-" if f.ok is None else ("PASS" if f.ok else "FAIL")
        rows.append([f.name, f"{f.value:.4g}", f.unit, f.requirement, ok, f.reference])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for note in result.notes:
        print(f"note: {note}", file=out)
    print("", file=out)
    if result.passed:
        print("commissioning PASS: every requirement met", file=out)
    else:
        print(f"commissioning FAIL: {len(result.failures)} requirement(s) missed", file=out)
        for failure in result.failures:
            print(f"  - {failure}", file=out)
