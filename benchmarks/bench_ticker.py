"""10 Hz tick lateness: ``vpp.core.Ticker`` against an ``asyncio.sleep``-paced loop.

Both run at the same time for the same duration (60 s, or 5 s with ``--quick``): the
ticker in a thread of this process, the asyncio loop in a child process (so neither holds
the other's GIL). Both aim at absolute deadlines ``start + k * period``; the asyncio loop is
the usual ``await asyncio.sleep(deadline - loop.time())``.

Lateness is reported two ways for the ticker: as returned by ``wait()`` (measured in Rust
at wake-up) and as observed in Python right after ``wait()`` returns (includes taking the
GIL back). The ratio against asyncio uses the Python-observed figure, which is what a loop
body sees, like the asyncio figure.

Usage: ``python benchmarks/bench_ticker.py [--quick] [--seconds S] [--realtime WHO]
[--spin-us US]``

``--realtime`` asks SCHED_FIFO at priority 50 and mlockall: ``none`` (both loops at
normal priority), ``ticker`` (default: the ticker through ``Ticker(realtime=True)``, as
deployed on an RTU, against the usual asyncio loop; where the system refuses real-time
scheduling the ticker runs without it and the row ``ticker.realtime.sched_fifo`` says so)
or ``both`` (the asyncio child too, through
``os.sched_setscheduler`` and libc ``mlockall``: compares the timing mechanisms alone).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vpp.bench import percentile, row  # noqa: E402

PERIOD_S = 0.1
TARGET_P99_MS = 0.5
RT_PRIORITY = 50
REALTIME_CHOICES = ("none", "ticker", "both")
TARGET_RATIO = 10.0
REFERENCE = "asyncio.sleep absolute-deadline loop, child process, same run"


def summary(values: list[float]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max of lateness values, in milliseconds."""
    return {
        "p50": percentile(values, 0.5) * 1e3,
        "p99": percentile(values, 0.99) * 1e3,
        "p99.9": percentile(values, 0.999) * 1e3,
        "max": max(values) * 1e3,
    }


async def _asyncio_paced(seconds: float, period: float) -> list[float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    lateness: list[float] = []
    k = 1
    while k * period <= seconds:
        deadline = start + k * period
        await asyncio.sleep(deadline - loop.time())
        lateness.append(loop.time() - deadline)
        k += 1
    return lateness


def _child_realtime(priority: int) -> None:
    """Give the asyncio child what ``Ticker(realtime=True)`` gives the ticker thread."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as e:
        print(f"asyncio child: SCHED_FIFO refused: {e}", file=sys.stderr)
    mcl_current_future = 1 | 2  # Linux x86/arm values of MCL_CURRENT | MCL_FUTURE
    if ctypes.CDLL(None, use_errno=True).mlockall(mcl_current_future) != 0:
        print(f"asyncio child: mlockall refused: errno {ctypes.get_errno()}", file=sys.stderr)


def asyncio_child(seconds: float, period: float, realtime: bool) -> None:
    """Entry point of the child process: run the asyncio loop, print lateness as JSON."""
    if realtime:
        _child_realtime(RT_PRIORITY)
    print(json.dumps(asyncio.run(_asyncio_paced(seconds, period))))


def ticker_loop(
    seconds: float, period: float, realtime: bool, spin_us: int | None, out: dict[str, Any]
) -> None:
    """Run the ticker for ``seconds``; fill ``out`` with lateness lists and stats."""
    from vpp.core import Ticker

    spin = {} if spin_us is None else {"spin_us": spin_us}
    ticker = Ticker(period_s=period, realtime=realtime, priority=RT_PRIORITY, **spin)
    n = int(seconds / period + 1e-9)
    returned: list[float] = []
    observed: list[float] = []
    for _ in range(n):
        deadline = ticker.next_deadline
        returned.append(ticker.wait())
        observed.append(time.monotonic() - deadline)
    out.update(
        returned=returned,
        observed=observed,
        stats=ticker.stats(),
        realtime=ticker.realtime_status,
        spin_us=ticker.spin_us,
    )


def _row(
    name: str, value: float, *, unit: str = "ms", target: str = "", **kw: Any
) -> dict[str, Any]:
    # Most rows here are lateness figures in milliseconds, most without a target.
    return row(name, value, unit, target=target, **kw)


def run(
    quick: bool = False,
    *,
    seconds: float | None = None,
    realtime: str = "ticker",
    spin_us: int | None = None,
) -> list[dict[str, Any]]:
    """Run both loops concurrently and return the benchmark rows.

    ``realtime`` is ``"none"``, ``"ticker"`` or ``"both"`` (see the module docstring);
    ``spin_us`` overrides the ticker's default final spin.
    """
    if realtime not in REALTIME_CHOICES:
        raise ValueError(f"realtime must be one of {REALTIME_CHOICES}, got {realtime!r}")
    secs = seconds if seconds is not None else (5.0 if quick else 60.0)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, __file__, "--asyncio-child", str(secs)]
        + (["--realtime", "both"] if realtime == "both" else []),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    out: dict[str, Any] = {}
    th = threading.Thread(
        target=ticker_loop, args=(secs, PERIOD_S, realtime != "none", spin_us, out), name="ticker"
    )
    th.start()
    th.join()
    child_out, _ = child.communicate(timeout=secs + 60)
    if child.returncode != 0:
        raise RuntimeError(f"asyncio child failed with exit code {child.returncode}")
    aio = summary(json.loads(child_out))
    ret = summary(out["returned"])
    obs = summary(out["observed"])
    ratio = aio["p99"] / obs["p99"] if obs["p99"] > 0 else float("inf")

    rows = [_row(f"ticker.wait_lateness.{k}", v) for k, v in ret.items()]
    rows[1].update(target=f"<= {TARGET_P99_MS} ms", ok=ret["p99"] <= TARGET_P99_MS)
    rows += [_row(f"ticker.observed_lateness.{k}", v) for k, v in obs.items()]
    rows[5].update(
        reference=REFERENCE,
        ratio=ratio,
        target=f"<= {TARGET_P99_MS} ms",
        ok=obs["p99"] <= TARGET_P99_MS,
    )
    rows += [_row(f"asyncio.lateness.{k}", v) for k, v in aio.items()]
    rows.append(
        _row(
            "ticker.p99_advantage",
            ratio,
            unit="x",
            reference=REFERENCE,
            ratio=ratio,
            target=f">= {TARGET_RATIO:g}x (asyncio p99 / ticker observed p99)",
            ok=ratio >= TARGET_RATIO,
        )
    )
    stats = out["stats"]
    rows.append(_row("ticker.ticks", float(stats["count"]), unit="ticks"))
    rows.append(
        _row(
            "ticker.overruns",
            float(stats["overruns"]),
            unit="ticks",
            target="== 0",
            ok=stats["overruns"] == 0,
        )
    )
    rows.append(_row("ticker.spin", float(out["spin_us"]), unit="us"))
    rows.append(_row("asyncio.realtime", float(realtime == "both"), unit="bool"))
    for key in ("sched_fifo", "mlockall"):
        rows.append(_row(f"ticker.realtime.{key}", float(out["realtime"][key]), unit="bool"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s instead of 60 s")
    parser.add_argument("--seconds", type=float, help="override the duration")
    parser.add_argument(
        "--realtime",
        choices=REALTIME_CHOICES,
        default="ticker",
        help="which loops get SCHED_FIFO + mlockall (default: none)",
    )
    parser.add_argument("--spin-us", type=int, help="ticker final spin (default: Ticker's)")
    parser.add_argument("--asyncio-child", type=float, metavar="S", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.asyncio_child is not None:
        asyncio_child(args.asyncio_child, PERIOD_S, args.realtime == "both")
        return
    for r in run(args.quick, seconds=args.seconds, realtime=args.realtime, spin_us=args.spin_us):
        ratio = "" if r["ratio"] is None else f"  ratio {r['ratio']:.1f}x"
        ok = "" if r["ok"] is None else ("  OK" if r["ok"] else "  MISS")
        target = f"  target {r['target']}" if r["target"] else ""
        print(f"{r['name']:32s} {r['value']:10.3f} {r['unit']:5s}{ratio}{target}{ok}")


if __name__ == "__main__":
    main()
