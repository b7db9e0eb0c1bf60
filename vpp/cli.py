"""The ``vpp`` command line.

- ``vpp run``: run the main job (for now the core pipeline on a simulated PMU stream,
  printing one decision per line; the orchestrator will take this over).
- ``vpp pmu decode FILE``: decode a raw C37.118 byte stream to JSON lines.
- ``vpp bench``: run the benchmark suite and print a table (``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _cmd_run(args: argparse.Namespace) -> int:
    from vpp import demo

    code: int = demo.run(
        duration=args.duration,
        rate=args.rate,
        profile=args.profile,
        every=args.every,
        as_json=args.json,
        realtime=not args.fast,
    )
    return code


def _cmd_pmu_decode(args: argparse.Namespace) -> int:
    from vpp import c37118

    errors = 0
    with open(args.file, "rb") if args.file != "-" else sys.stdin.buffer as stream:
        for obj in c37118.decode_stream_to_json(stream):
            if obj.get("type") == "error":
                errors += 1
            sys.stdout.write(json.dumps(obj) + "\n")
    if errors:
        print(f"vpp pmu decode: {errors} corrupt frame(s) skipped", file=sys.stderr)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from vpp import bench

    rows = bench.run(args.names, quick=args.quick)
    if args.json:
        bench.print_json(rows)
    else:
        bench.print_table(rows)
    return 0 if all(r.get("ok") is not False for r in rows) or not args.strict else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vpp`` command (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="vpp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the main job (simulated site)")
    run.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    run.add_argument("--rate", type=int, default=50, choices=(10, 25, 50), help="PMU frames/s")
    run.add_argument(
        "--profile",
        default="event",
        choices=("event", "constant", "ramp", "oscillation"),
        help="simulated grid frequency profile (default: a load-loss event and recovery)",
    )
    run.add_argument("--every", type=int, default=0, help="print every Nth decision (default 1 s)")
    run.add_argument("--json", action="store_true", help="print decisions as JSON lines")
    run.add_argument(
        "--fast", action="store_true", help="do not pace frames in real time (simulate at speed)"
    )
    run.set_defaults(func=_cmd_run)

    pmu = sub.add_parser("pmu", help="C37.118 tools")
    pmu_sub = pmu.add_subparsers(dest="pmu_command", required=True)
    dec = pmu_sub.add_parser("decode", help="decode a raw C37.118 byte stream to JSON lines")
    dec.add_argument("file", help="file of frames (configuration before data), or - for stdin")
    dec.set_defaults(func=_cmd_pmu_decode)

    bench = sub.add_parser("bench", help="run the benchmarks and print a table")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    bench.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vpp`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return code
