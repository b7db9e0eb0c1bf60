"""The market gateway: DAM schedule optimisation for one battery, and exchange clearing.

- The 96-block LP (HiGHS via scipy.optimize.linprog, sparse matrices) solved repeatedly
  on varied forecasts: median and p99 wall time, against the 1 s target; the pure-Python
  threshold heuristic (:func:`greedy_schedule`) timed in the same run as the reference,
  and the revenue the LP adds over it.
- Rounding of the schedule to the 0.1 MW step and its re-check.
- Clearing a whole DAM day (96 blocks) with N bids per block (plus our own bids).

Run: ``python benchmarks/bench_market.py [--quick]`` or ``vpp bench market``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from vpp.bench import percentile, row  # noqa: E402
from vpp.orchestrator.market import (  # noqa: E402
    BatteryParams,
    BidLimits,
    Product,
    greedy_schedule,
    optimise,
    round_schedule,
    to_bids,
)
from vpp.sim.exchange import SimExchange, SyntheticMarket, clear_block  # noqa: E402

Row = dict[str, Any]
DAY = date(2026, 11, 22)
BATTERY = BatteryParams(
    p_charge_max_mw=25.0, p_discharge_max_mw=25.0, soc_min_mwh=5.0, soc_max_mwh=100.0,
    soc_initial_mwh=50.0, soc_final_mwh=50.0, eta_charge=0.95, eta_discharge=0.95,
    degradation_rs_mwh=300.0, reserve_mw=5.0, reserve_duration_h=0.5,
)  # fmt: skip


def _forecasts(count: int) -> list[list[float]]:
    m = SyntheticMarket()
    ref = np.array([m.reference_price(b) for b in range(96)])
    rng = np.random.default_rng(1)
    return [list(np.clip(np.round(ref + rng.normal(0, 700, 96)), 0, 10_000)) for _ in range(count)]


def _times(fn: Callable[[Any], Any], inputs: list[Any]) -> list[float]:
    out = []
    for x in inputs:
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return sorted(out)


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    n = 20 if quick else 200
    fc = _forecasts(n)
    optimise(fc[0], BATTERY)  # first call imports and warms HiGHS
    lp = _times(lambda p: optimise(p, BATTERY), fc)
    greedy = _times(lambda p: greedy_schedule(p, BATTERY), fc)
    schedules = [optimise(p, BATTERY) for p in fc]
    rounding = _times(lambda s: round_schedule(s, BATTERY), schedules)
    # Like for like: the heuristic does not aim at a final SOC, so neither does this LP.
    free = BATTERY.model_copy(update={"soc_final_mwh": None})
    gain = [optimise(p, free).revenue_rs - greedy_schedule(p, free).revenue_rs for p in fc]
    lp_med, gr_med = statistics.median(lp), statistics.median(greedy)

    per_block = 50 if quick else 200
    ours = to_bids(round_schedule(schedules[0], BATTERY), DAY)
    market = SyntheticMarket(orders_per_side=per_block // 2)
    clears = []
    for _ in range(3 if quick else 10):
        ex = SimExchange(market=market)
        for b in ours:
            ex.submit(b)
        t = time.perf_counter()
        ex.clear(Product.DAM, DAY)
        clears.append(time.perf_counter() - t)
    clears.sort()
    books = [market.orders(DAY, b, BidLimits(), 0) for b in range(96)]
    matching = _times(lambda _: [clear_block(o) for o in books], list(range(3 if quick else 10)))
    return [
        row(f"DAM LP, one battery, 96 blocks, median ({n} solves)", lp_med * 1e3, "ms",
            reference=f"greedy heuristic (pure Python) {gr_med * 1e3:.3g} ms",
            ratio=lp_med / gr_med, target="<= 1000 ms", ok=lp_med <= 1.0),
        row("DAM LP, p99", percentile(lp, 0.99) * 1e3, "ms", target="<= 1000 ms",
            ok=percentile(lp, 0.99) <= 1.0),
        row("greedy heuristic, median", gr_med * 1e3, "ms", reference="-"),
        row("LP revenue over the heuristic, median", statistics.median(gain), "Rs/day",
            reference=f"min {min(gain):.0f} Rs/day", target=">= 0 (every day)",
            ok=min(gain) >= -1e-6),
        row("round to 0.1 MW + re-check, median", statistics.median(rounding) * 1e3, "ms"),
        row(f"clear 96 blocks x {per_block} bids (+{len(ours)} ours), median",
            statistics.median(clears) * 1e3, "ms"),
        row("clear 96 blocks, max", clears[-1] * 1e3, "ms"),
        row(f"of which matching alone (clear_block, 96 x {per_block} orders), median",
            statistics.median(matching) * 1e3, "ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
