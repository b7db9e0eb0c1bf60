"""The ``vpp`` command line.

- ``vpp run``: run a whole site (by default the embedded simulated one): plant, field
  controllers, campus, grid and market processes, supervised, with history and live status.
- ``vpp demo``: the core pipeline alone on a simulated PMU stream, one decision per line.
- ``vpp pmu decode FILE``: decode a raw C37.118 byte stream to JSON lines.
- ``vpp pmu serve``: run a simulated PMU (C37.118 over TCP) on ``--host:--port``.
- ``vpp pmu listen HOST:PORT``: connect as a PDC and print decoded frames as JSON lines.
- ``vpp keys NAME``: create a CurveZMQ key pair for the orchestrator bus.
- ``vpp audit verify``: check the hash chain of the history's commands (exit 1 when
  a row was edited, inserted, deleted or moved, or the key is wrong).
- ``vpp sim bess``: run the BESS simulator (Modbus TCP or RTU) until a signal
  (subcommands in :mod:`vpp.sim.cli`).
- ``vpp api hash``: the hash of a password, or a new token and its hash, for ``api.users``.
- ``vpp history``: questions to the history (events, a unit's rows, the fleet, commands),
  as a table or CSV; ``vpp report event N``: an HTML report of one frequency event
  (subcommands in :mod:`vpp.reports.cli`).
- ``vpp settle DAY``: the settlement statement of an IST day, CSV and HTML
  (:mod:`vpp.reports.settle_cli`).
- ``vpp ctl``: read and command a running site (subcommands in :mod:`vpp.ctl`).
- ``vpp bench``: run the benchmark suite and print a table (``--json`` for JSON).

Global options (before the command): ``--version``; ``--log-level`` and ``--log-file``
(every process of ``vpp run`` logs there too). An error a user can fix (a bad config, a
missing file, an address in use, an unknown name) is one line on standard error and exit
code 2; a site whose process spent its restart budget exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vpp.errors import ProcessFailedError, VppError
from vpp.logsetup import LEVELS, LogSettings, configure


def _cmd_run(args: argparse.Namespace) -> int:
    from vpp.orchestrator import launcher

    only = [n for n in args.only.split(",") if n] if args.only else None
    return launcher.main(
        args.config, args.duration, as_json=args.json, history=args.history, only=only
    )


def _cmd_demo(args: argparse.Namespace) -> int:
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


def _cmd_pmu_serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from vpp.aio import stop_on_signals
    from vpp.sim.frequency import FrequencyProfile
    from vpp.sim.pmu import PmuServer

    profile = FrequencyProfile(
        kind="csv" if args.csv else args.profile,
        csv=args.csv,
        nominal=args.nominal,
        magnitude=args.magnitude,
        start=args.start,
        period=args.period,
        noise=args.noise,
        seed=args.seed,
    )

    async def serve() -> None:
        async with PmuServer(args.idcode, args.rate, profile, args.host, args.port) as srv:
            # Printed after binding so that a caller using --port 0 learns the port.
            print(
                f"vpp pmu serve: listening on {args.host}:{srv.port} "
                f"(IDCODE {args.idcode}, {args.rate} frames/s, profile {args.profile})",
                file=sys.stderr,
                flush=True,
            )
            with stop_on_signals() as stop, contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)

    asyncio.run(serve())
    return 0


def _cmd_pmu_listen(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from vpp import c37118
    from vpp.drivers.pmu import PdcClient

    host, _, port = args.address.rpartition(":")
    if not host or not port.isdigit():
        print(f"vpp pmu listen: expected HOST:PORT, got {args.address!r}", file=sys.stderr)
        return 2

    def on_error(err: c37118.FrameError) -> None:
        sys.stdout.write(json.dumps(c37118.error_to_json(err)) + "\n")

    async def listen() -> int:
        client = PdcClient(host.strip("[]"), int(port), args.idcode, on_error=on_error)
        data = 0
        try:
            async with contextlib.aclosing(client.frames()) as frames:
                async for frame in frames:
                    sys.stdout.write(json.dumps(c37118.frame_to_json(frame)) + "\n")
                    sys.stdout.flush()
                    if isinstance(frame, c37118.DataFrame):
                        data += 1
                        if args.count and data >= args.count:
                            break
        finally:
            await client.close()
        return 0

    code: int = asyncio.run(listen())
    return code


def _cmd_bench(args: argparse.Namespace) -> int:
    from vpp import bench

    if args.commission or (not args.names and not bench.discover()):
        # An installed package has no benchmarks/ (the development comparisons): what
        # ships is the deployment's own suite.
        from vpp.commission import cli as commission_cli

        return commission_cli.run(args)
    if args.config is not None or args.record is not None:
        from vpp.validation import config_error

        raise config_error("--config and --record go with --commission", "bench")
    rows = bench.run(args.names, quick=args.quick)
    if args.json:
        bench.print_json(rows)
    else:
        bench.print_table(rows)
    return 0 if all(r.get("ok") is not False for r in rows) or not args.strict else 1


def _cmd_keys(args: argparse.Namespace) -> int:
    from vpp.orchestrator.bus import keys

    return keys.cli(args)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from vpp.orchestrator import audit

    history, key = args.history, args.key
    if history is None or (key is None and args.config is not None):
        from vpp.config import load

        # Where `vpp run` with the same config writes, and the key it uses.
        cfg = load(args.config).history
        history = history or cfg.path
        key = key or cfg.audit_key
    result = audit.verify(history, key)
    if not result.ok:
        print(f"vpp audit verify: {history}: {result}", file=sys.stderr)
        return 1
    print(f"vpp audit verify: {history}: {result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vpp`` command (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="vpp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vpp {_version()}")
    parser.add_argument(
        "--log-level", default="warning", choices=LEVELS,
        help="least severe log records shown (default warning)",
    )  # fmt: skip
    parser.add_argument(
        "--log-file", default=None, metavar="FILE",
        help="append the logs of every process here instead of standard error",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a site (default: the embedded simulated one)")
    run.add_argument("--config", default=None, help="site YAML file (default: embedded site)")
    run.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)"
    )
    run.add_argument("--json", action="store_true", help="status as JSON lines")
    run.add_argument("--history", default=None, help="SQLite history file (default: config's)")
    run.add_argument(
        "--only",
        default=None,
        help="run only these processes of the site (comma-separated: field ids, campus, grid, "
        "market, broker, plant), e.g. on one host of several",
    )
    run.set_defaults(func=_cmd_run)

    run = sub.add_parser("demo", help="the core pipeline alone on a simulated PMU stream")
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
    run.set_defaults(func=_cmd_demo)

    pmu = sub.add_parser("pmu", help="C37.118 tools")
    pmu_sub = pmu.add_subparsers(dest="pmu_command", required=True)
    dec = pmu_sub.add_parser("decode", help="decode a raw C37.118 byte stream to JSON lines")
    dec.add_argument("file", help="file of frames (configuration before data), or - for stdin")
    dec.set_defaults(func=_cmd_pmu_decode)

    from vpp.sim.config import PROFILES

    serve = pmu_sub.add_parser("serve", help="run a simulated PMU (C37.118 over TCP)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4712, help="TCP port (default 4712; 0: any)")
    serve.add_argument("--idcode", type=int, default=7734, help="IDCODE (default 7734)")
    serve.add_argument("--rate", type=int, default=50, choices=(10, 25, 50), help="frames/s")
    serve.add_argument("--profile", default="event", choices=PROFILES, help="frequency profile")
    serve.add_argument("--nominal", type=float, default=50.0, help="nominal Hz (50 or 60)")
    serve.add_argument(
        "--magnitude", type=float, default=-0.35, help="disturbance in Hz (ramp: Hz/s)"
    )
    serve.add_argument("--start", type=float, default=2.0, help="disturbance start (s)")
    serve.add_argument("--period", type=float, default=4.0, help="oscillation period (s)")
    serve.add_argument("--noise", type=float, default=0.0005, help="noise std dev (Hz)")
    serve.add_argument("--seed", type=int, default=1, help="noise seed")
    serve.add_argument(
        "--csv", type=Path, default=None, help="play a recording (time_s,freq_hz rows; loops)"
    )
    serve.add_argument(
        "--duration", type=float, default=None, help="seconds to serve (default: until Ctrl-C)"
    )
    serve.set_defaults(func=_cmd_pmu_serve)

    listen = pmu_sub.add_parser("listen", help="connect as a PDC; print frames as JSON lines")
    listen.add_argument("address", metavar="HOST:PORT", help="the PMU to connect to")
    listen.add_argument("--count", type=int, default=0, help="stop after N data frames")
    listen.add_argument("--idcode", type=int, default=1, help="IDCODE of our commands")
    listen.set_defaults(func=_cmd_pmu_listen)

    keys = sub.add_parser("keys", help="create a CurveZMQ key pair (NAME.key, NAME.key_secret)")
    keys.add_argument("name", nargs="?", help="key pair name (e.g. campus, field-site1)")
    keys.add_argument(
        "--site", default=None, help="a pair for every process of this site config, authorized"
    )
    keys.add_argument("--dir", default="keys", help="directory of the keys (default ./keys)")
    keys.add_argument("--force", action="store_true", help="replace an existing pair")
    keys.set_defaults(func=_cmd_keys)

    aud = sub.add_parser("audit", help="the audit of commands in the history")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    ver = aud_sub.add_parser("verify", help="check the commands' hash chain (exit 1 if broken)")
    ver.add_argument("--config", default=None, help="site YAML whose history to check")
    ver.add_argument("--history", default=None, help="SQLite history file (default: config's)")
    ver.add_argument(
        "--key", default=None, help="audit key file (default: config's, or HISTORY.audit-key)"
    )
    ver.set_defaults(func=_cmd_audit_verify)
    from vpp.orchestrator.api import cli as api_cli
    from vpp.reports import cli as reports_cli
    from vpp.reports import settle_cli
    from vpp.sim import cli as sim_cli

    sim_cli.add_parser(sub)
    api_cli.add_parser(sub)
    reports_cli.add_parser(sub)
    settle_cli.add_parser(sub)
    from vpp import ctl

    ctl.add_parser(sub)
    from vpp.hil import cli as hil_cli

    hil_cli.add_parser(sub)

    bench = sub.add_parser("bench", help="run the benchmarks and print a table")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    bench.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    bench.add_argument(
        "--commission",
        action="store_true",
        help="measure what a deployment depends on and check the site's requirements "
        "(the default where no benchmarks/ source tree is present; docs/deploy.md)",
    )
    bench.add_argument("--config", help="site YAML file whose requirements apply (--commission)")
    bench.add_argument(
        "--record", help="write the JSON commissioning record here (--commission)"
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def _version() -> str:
    # Imported here: every process `vpp run` spawns imports this module again (it is the
    # console script's), and importlib.metadata costs about 0.1 s of its start.
    import importlib.metadata

    try:
        return importlib.metadata.version("vpp")
    except importlib.metadata.PackageNotFoundError:
        from vpp import __version__  # a checkout run with PYTHONPATH, not installed

        return __version__


def _fail(command: str, exc: BaseException) -> None:
    # One line: what went wrong and where, never a traceback.
    text = " ".join(str(exc).split())
    print(f"vpp {command}: {type(exc).__name__}: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vpp`` console script."""
    args = build_parser().parse_args(argv)
    try:
        configure(LogSettings(getattr(logging, args.log_level.upper()), args.log_file), "vpp")
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except ProcessFailedError as exc:
        # The site ran, and one of its processes kept crashing (its log has the tracebacks).
        _fail(args.command, exc)
        return 1
    except (VppError, OSError) as exc:
        # A bad config, option, file or address: the error says what and where.
        _fail(args.command, exc)
        return 2
    return code
