"""The SunSpec BESS simulator (:class:`vpp.sim.sunspec.SunSpecBessSimulator`) as a
process of its own, for the end-to-end device tests: ``vpp sim bess`` serves only the
register map, so the tests run ``python -m tests.hil.sunspec_sim --port N`` instead.
It serves until SIGTERM or SIGINT (or ``--duration``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from vpp.aio import stop_on_signals
from vpp.sim.sunspec import SunSpecBessSimulator


async def _serve(args: argparse.Namespace) -> None:
    sim = SunSpecBessSimulator(
        port=args.port,
        rated_power_kw=args.rated_power_kw,
        capacity_kwh=args.capacity_kwh,
        initial_soc_pct=args.soc,
        ramp_kw_s=args.ramp_kw_s,
    )
    with stop_on_signals() as stop:
        async with sim:
            # After binding: the caller waits for the port to answer, this is for the log.
            print(f"sunspec_sim: serving SunSpec on 127.0.0.1:{sim.port}", file=sys.stderr,
                  flush=True)  # fmt: skip
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.hil.sunspec_sim")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rated-power-kw", type=float, default=500.0)
    p.add_argument("--capacity-kwh", type=float, default=1000.0)
    p.add_argument("--soc", type=float, default=50.0)
    p.add_argument("--ramp-kw-s", type=float, default=100.0)
    p.add_argument("--duration", type=float, default=None)
    asyncio.run(_serve(p.parse_args()))


if __name__ == "__main__":
    main()
