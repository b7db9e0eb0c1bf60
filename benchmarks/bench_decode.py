"""C37.118 data-frame decoding: vpp's compiled codec against pyPMU on the same bytes.

The frame is one PMU with 4 phasors, 3 analogs and 1 digital word, all integer fields
(pyPMU cannot read a float FREQ of 50 Hz; see tests/c37118/test_interop_pypmu.py).
Each figure is the median over repeated timed blocks (time.perf_counter_ns), divided
by the calls per block. The batch figure is one `decode_batch` call over 10 000 frames.

Run ``python benchmarks/bench_decode.py [--quick]`` to print the rows, or call
:func:`run` from the benchmark suite.
"""

from __future__ import annotations

import os

# NumPy's OpenBLAS starts worker threads that spin and compete with the measured code for
# cores; nothing here uses BLAS. Must be set before NumPy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from vpp import c37118 as c
from vpp.bench import row

BATCH_FRAMES = 10_000


def _median_ns(fn: Callable[[], object], calls: int, blocks: int) -> float:
    """Median nanoseconds per call over `blocks` blocks of `calls` calls."""
    fn()  # warm up caches and lazy imports
    samples = []
    for _ in range(blocks):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(samples)


def _config() -> c.ConfigFrame:
    pmu = c.PmuConfig(
        "BENCH PMU",
        1,
        0b0001,  # polar integer phasors, integer analogs and FREQ/DFREQ
        ["VA", "VB", "VC", "IA"],
        [915527, 915527, 915527, (1 << 24) | 45776],
        ["P", "Q", "T"],
        [(1 << 24) | 1] * 3,
        [f"D{i}" for i in range(16)],
        [0x0000FFFF],
        fnom=50.0,
    )
    return c.ConfigFrame("cfg2", 1, [pmu], time_base=1_000_000, data_rate=50, soc=1_700_000_000)


def _frame(cfg: c.ConfigFrame, i: int) -> bytes:
    phasors = [(230.0 * 9.15527 * 100, 0.1 * k + i * 1e-4) for k in range(3)] + [(400.0, -0.5)]
    data = c.PmuData(phasors, 50.0 + (i % 100) * 1e-4, 0.01, [10.0, -5.0, 42.0], [i & 0xFFFF])
    return c.encode(c.DataFrame(cfg, [data], 1_700_000_000 + i // 50, fracsec=(i % 50) * 20_000))


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure and return the rows (see the module docstring)."""
    blocks = 5 if quick else 21
    cfg = _config()
    raw = _frame(cfg, 1)
    batch = b"".join(_frame(cfg, i) for i in range(BATCH_FRAMES))

    # functools.partial calls from C: no Python frame of our own around each timed call,
    # for either implementation.
    ours_ns = _median_ns(partial(c.decode, raw, cfg), 2_000 if quick else 20_000, blocks)
    batch_ns = _median_ns(lambda: c.decode_batch(batch, cfg), 1, blocks) / BATCH_FRAMES

    rows = [
        row("c37118 decode, one data frame from Python", ours_ns / 1e3, "us/frame"),
        row("c37118 decode_batch, per frame", batch_ns / 1e3, "us/frame"),
    ]
    try:
        from tests.support import pypmu as fr  # the one pyPMU import shim
    except ImportError:
        return rows
    cfg_p = fr.ConfigFrame2.convert2frame(c.encode(cfg))
    ref_ns = _median_ns(
        partial(fr.DataFrame.convert2frame, raw, cfg_p), 100 if quick else 1_000, blocks
    )
    ref = "pyPMU DataFrame.convert2frame"
    return [
        row(
            "c37118 decode, one data frame from Python",
            ours_ns / 1e3,
            "us/frame",
            reference=ref,
            ratio=ref_ns / ours_ns,
            target=">= 100x",
            minimum=100,
        ),
        row(
            "c37118 decode_batch, per frame",
            batch_ns / 1e3,
            "us/frame",
            reference=ref,
            ratio=ref_ns / batch_ns,
            target=">= 1000x",
            minimum=1000,
        ),
        row(ref, ref_ns / 1e3, "us/frame", target="reference"),
    ]


def main(argv: list[str]) -> int:
    for r in run(quick="--quick" in argv):
        ratio = (
            ""
            if r["ratio"] is None
            else f"  x{r['ratio']:.0f} vs {r['reference']} (target {r['target']}, ok={r['ok']})"
        )
        print(f"{r['name']:<45} {r['value']:10.3f} {r['unit']}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
