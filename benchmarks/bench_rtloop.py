"""End to end with 10 units: a PMU frame leaves the simulator -> each unit's setpoint
arrives at its Modbus server; the core's real-time loop beside the asyncio path, in the
same run, on a quiet machine, with a CPU hog on every core, and with a GIL hog in the
controller's process; then 10 SunSpec units (quiet only), the loop beside the driver.

Three processes, as on a site: this one runs the PMU (a :class:`PmuServer` at 50
frames/s, a triangle wave between 49.60 and 49.85 Hz, so every frame moves every
unit's droop setpoint by about 0.4 kW); a Modbus server process serves the 10 units (one
port each, the simulated BESS's register image for the controller's polls) and stamps
each setpoint write with the kernel's receive time of its bytes (SO_TIMESTAMPNS), so the
server's own scheduling and Python work add nothing to the figure; the
field controller runs in a process of its own. Times are CLOCK_MONOTONIC, system wide.
The frequency is a sawtooth (49.85 down to 49.60 Hz in 10 s, 0.5 mHz per frame), so a
setpoint value (0.1 kW steps) recurs only 10 s later: a write is matched to the latest
frame within the last second whose droop setpoint it carries.

- CPU hog: one busy process per core at normal priority for the whole case. The PMU and
  the Modbus server stand for devices with CPUs of their own: they run under SCHED_FIFO
  where allowed (the PMU at 60, so its send stamps follow its writes; the server at 40,
  below the loop's 50, since its stamps are the kernel's), so the hog slows only the
  controller.
- GIL hog: a thread of the controller's process holding the GIL for ~500 ms at a time
  (one C call, ``sum(range(n))``, which never releases it), then 100 ms free.

The measurement is :mod:`vpp.commission.e2e` (``vpp bench --commission`` runs its
quiet case). The loop asks for SCHED_FIFO and locked memory as ``vpp run`` does; the table says
whether they were granted. Reference in the same run: the asyncio path's figures.

Run: ``python benchmarks/bench_rtloop.py [--quick]`` or ``vpp bench rtloop``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp.bench import percentile, row  # noqa: E402
from vpp.commission.e2e import CASES, measure  # noqa: E402

Row = dict[str, Any]


def _latency_rows(label: str, rt_lat: list[float], py_lat: list[float]) -> list[Row]:
    """p50, p99 and max of the loop's latencies against their targets, the asyncio
    path's beside them."""
    rows = []
    for q, name, target in ((0.5, "p50", 0.25), (0.99, "p99", 1.0), (1.0, "max", 5.0)):
        rt_v = percentile(rt_lat, q) if q < 1 else max(rt_lat, default=float("nan"))
        py_v = percentile(py_lat, q) if q < 1 else max(py_lat, default=float("nan"))
        rows.append(row(f"{label}: frame -> setpoint, 10 units, {name}, real-time loop",
                        rt_v, "ms", target=f"<= {target} ms", ok=rt_v <= target,
                        reference=f"asyncio path {py_v:.3g} ms",
                        ratio=py_v / rt_v if rt_v else float("nan")))  # fmt: skip
    return rows


def run(quick: bool = False) -> list[Row]:
    seconds = float(os.environ.get("BENCH_RTLOOP_S", 10.0 if quick else 30.0))
    rows: list[Row] = []
    results: dict[tuple[str, bool], tuple[list[float], dict[str, Any]]] = {}
    for case in CASES:
        for realtime in (False, True):
            results[case, realtime] = asyncio.run(measure(realtime, case, seconds))
    for case in CASES:
        py_lat, py_st = results[case, False]
        rt_lat, rt_st = results[case, True]
        rows += _latency_rows(case, rt_lat, py_lat)
        firsts = rt_st["unit_p50"]
        rows.append(row(f"{case}: loop, median of the first unit written / of the last",
                        firsts[0], "ms", reference=f"last unit {firsts[-1]:.3g} ms"))  # fmt: skip
        rows.append(row(f"{case}: frames sent / setpoints matched (loop; asyncio)",
                        rt_st["sent"], "frames",
                        reference=f"{rt_st['matched']} of {rt_st['writes']} writes; asyncio "
                        f"{py_st['matched']} of {py_st['writes']}"))  # fmt: skip
    # SunSpec units (quiet only): the loop writes them once their drivers discovered
    # the 704 layout; the asyncio path through the driver's set_power beside it.
    py_lat, py_st = asyncio.run(measure(False, "quiet", seconds, protocol="sunspec"))
    rt_lat, rt_st = asyncio.run(measure(True, "quiet", seconds, protocol="sunspec"))
    rows += _latency_rows("quiet, SunSpec", rt_lat, py_lat)
    rows.append(row("quiet, SunSpec: units the loop wrote / setpoints matched", rt_st["loop_units"],
                    "units", reference=f"{rt_st['matched']} of {rt_st['writes']} writes; asyncio "
                    f"{py_st['matched']} of {py_st['writes']}"))  # fmt: skip
    loop_max = max(results[c, True][1]["max_frame_ms"] or 0.0 for c in CASES)
    rows.append(row("inside the loop: frame read -> last write sent, max of all cases", loop_max,
                    "ms", reference="the rest of the figures above is the kernel, the "
                    "scheduler and the wire"))  # fmt: skip
    st = results["quiet", True][1]
    rows.append(row("loop thread under SCHED_FIFO / memory locked", 1.0 if st["realtime"] else 0.0,
                    "granted", reference=f"memory locked: {st['memory_locked']}; simulated "
                    f"devices under SCHED_FIFO: {st['devices_fifo']}"))  # fmt: skip
    return rows


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run(quick="--quick" in sys.argv))
