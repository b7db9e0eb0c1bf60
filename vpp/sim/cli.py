"""``vpp sim``: run a simulated device on its own, for a driver or a tool to talk to.

- ``vpp sim bess``: the BESS simulator (:class:`vpp.sim.bess.BessSimulator`) on Modbus
  TCP (``--host``/``--port``), or Modbus RTU on a serial port (``--rtu PORT``), or with
  ``--sunspec`` the SunSpec BESS simulator (:class:`vpp.sim.sunspec.SunSpecBessSimulator`:
  the SunSpec model chain over Modbus TCP, as a SunSpec inverter serves it). It runs
  until SIGINT or SIGTERM (or ``--duration``), then stops cleanly and exits 0.
- ``vpp sim scada``: a simulated load despatch centre (:mod:`vpp.sim.ldc`), an IEC 104
  master that interrogates a site's outstation and sends it AGC set-points every cycle,
  printing a line a cycle. By default it finds the running site's outstation in the
  site's ``site.json``. Exits 0 at ``--duration`` or a signal, 1 when the outstation
  cannot be reached or closes the connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from vpp.aio import stop_on_signals
from vpp.errors import ConfigError

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` and its subcommands to the ``vpp`` parser's subcommands."""
    sim = sub.add_parser("sim", help="run a simulated device")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)

    bess = sim_sub.add_parser("bess", help="run the BESS simulator (Modbus TCP or RTU)")
    bess.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    bess.add_argument(
        "--port",
        type=int,
        default=5020,
        help="TCP port (default 5020: 502 needs root; 0: any free port)",
    )
    bess.add_argument("--device-id", type=int, default=1, help="Modbus unit id (default 1)")
    bess.add_argument(
        "--rtu", metavar="SERIALPORT", default=None, help="serve Modbus RTU on this port instead"
    )
    bess.add_argument(
        "--sunspec", action="store_true",
        help="serve SunSpec models (1, 701, 702, 704, 711, 713, 802 from 40000) instead of "
        "the register map (Modbus TCP only)",
    )  # fmt: skip
    bess.add_argument("--baudrate", type=int, default=19200, help="RTU baud rate (default 19200)")
    bess.add_argument("--parity", default="E", choices=("N", "E", "O"), help="RTU parity (E)")
    bess.add_argument("--capacity-kwh", type=float, default=1000.0, help="capacity (1000 kWh)")
    bess.add_argument("--rated-power-kw", type=float, default=500.0, help="rating (500 kW)")
    bess.add_argument("--soc", type=float, default=50.0, help="initial SOC in %% (default 50)")
    bess.add_argument("--ramp-kw-s", type=float, default=100.0, help="ramp limit (100 kW/s)")
    bess.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: until a signal)"
    )
    bess.set_defaults(func=_cmd_sim_bess)

    scada = sim_sub.add_parser(
        "scada", help="a simulated load despatch centre: an IEC 104 master steering a site"
    )
    scada.add_argument("--config", default=None,
                       help="the site's configuration (default: the embedded site)")
    scada.add_argument("--host", default=None, help="the outstation (default: the site's)")
    scada.add_argument("--port", type=int, default=None,
                       help="its port (default: the running site's, else scada.iec104.port)")
    scada.add_argument("--cycle", type=float, default=4.0, help="AGC cycle, s (default 4)")
    scada.add_argument("--amplitude", type=float, default=0.2,
                       help="AGC signal amplitude, MW (default 0.2)")
    scada.add_argument("--period", type=float, default=120.0,
                       help="AGC signal period, s (default 120)")
    scada.add_argument("--interrogate", type=float, default=60.0,
                       help="general interrogation interval, s (default 60)")
    scada.add_argument("--duration", type=float, default=None,
                       help="seconds to run (default: until a signal)")
    scada.set_defaults(func=_cmd_sim_scada)  # fmt: skip


def _cmd_sim_bess(args: argparse.Namespace) -> int:
    from vpp.sim.bess import BessSimulator, SerialLine

    if args.sunspec and args.rtu:
        print("vpp sim bess: --sunspec serves Modbus TCP only, not with --rtu", file=sys.stderr)
        return 2
    sim: BessSimulator
    try:
        common: dict[str, Any] = {
            "host": args.host, "port": args.port, "device_id": args.device_id,
            "capacity_kwh": args.capacity_kwh, "rated_power_kw": args.rated_power_kw,
            "initial_soc_pct": args.soc, "ramp_kw_s": args.ramp_kw_s,
        }  # fmt: skip
        if args.sunspec:
            from vpp.sim.sunspec import SunSpecBessSimulator

            sim = SunSpecBessSimulator(**common)
        else:
            sim = BessSimulator(
                **common, rtu=SerialLine(args.rtu, args.baudrate, args.parity) if args.rtu else None
            )
    except ConfigError as exc:
        print(f"vpp sim bess: {exc}", file=sys.stderr)
        return 2

    async def serve() -> int:
        with stop_on_signals() as stop:
            try:
                await sim.start()
            except ConfigError as exc:
                print(f"vpp sim bess: {exc}", file=sys.stderr)
                return 2
            try:
                where = (
                    f"Modbus RTU on {args.rtu} ({args.baudrate} 8{args.parity}1)"
                    if args.rtu
                    else f"{'SunSpec over ' if args.sunspec else ''}Modbus TCP on "
                    f"{args.host}:{sim.port}"
                )
                # Printed after binding, so that a caller using --port 0 learns the port.
                print(
                    f"vpp sim bess: serving {where}, device id {args.device_id}, "
                    f"{args.capacity_kwh:g} kWh, {args.rated_power_kw:g} kW, SOC {args.soc:g} %",
                    file=sys.stderr,
                    flush=True,
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.duration)
            finally:
                await sim.stop()
        print("vpp sim bess: stopped", file=sys.stderr, flush=True)
        return 0

    code: int = asyncio.run(serve())
    return code


def _cmd_sim_scada(args: argparse.Namespace) -> int:
    from vpp.config import load
    from vpp.errors import VppError
    from vpp.orchestrator.scada.iec104_map import Iec104PointMap
    from vpp.orchestrator.site_client import NoSiteError, find_site
    from vpp.sim.ldc import Iec104Master, LdcSettings, run_ldc

    name = "vpp sim scada"
    try:
        site = load(args.config)
        cfg = site.scada.iec104
        host, port = cfg.host, cfg.port
        with contextlib.suppress(NoSiteError):
            # A running site may have pinned its port (0 in the file): ask it.
            where = find_site(site=site).raw.get("scada", {}).get("iec104")
            if where:
                h, _, p = str(where).rpartition(":")
                host, port = h.strip("[]"), int(p)
        host = args.host or host
        port = args.port if args.port is not None else port
        pmap = Iec104PointMap.load(cfg.point_map, [u.id for u in site.units()])
    except VppError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    settings = LdcSettings(args.cycle, args.amplitude, args.period, args.interrogate)

    async def go() -> int:
        master = Iec104Master(host, port, common_address=cfg.common_address
                              or pmap.common_address)  # fmt: skip
        with stop_on_signals() as stop:
            try:
                await master.connect()
            except (OSError, TimeoutError) as exc:
                print(f"{name}: cannot reach the outstation at {host}:{port}: "
                      f"{exc or type(exc).__name__}", file=sys.stderr)  # fmt: skip
                await master.close()
                return 1
            print(f"{name}: connected to {host}:{port}", flush=True)
            task = asyncio.create_task(run_ldc(master, pmap, settings,
                                               lambda line: print(line, flush=True), stop))
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), args.duration)
                # Ended before its time and not by a signal: the outstation hung up.
                lost = master.closed.is_set() and not stop.is_set()
                stop.set()
                await task
            except (OSError, ConnectionError, TimeoutError, VppError) as exc:
                print(f"{name}: {exc or type(exc).__name__}", file=sys.stderr)
                return 1
            finally:
                await master.close()
            if lost:
                print(f"{name}: the outstation closed the connection", file=sys.stderr)
                return 1
        return 0

    code: int = asyncio.run(go())
    return code
