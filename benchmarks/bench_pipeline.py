"""Full pipeline per frame: latency distribution, allocations and memory.

Two measurements in one run:
1. The pure core (``core_ext/rt/examples/bench_pipeline.rs``): every frame timed over
   at least a million frames (median, p99.9), Rust heap allocations per frame, and
   resident memory sampled over ten million frames.
2. From Python: ``Pipeline.process`` per call, against a reference pipeline written the
   way a hand-made script would (pyPMU decodes the frame, Python computes droop and the
   clamp) on the same bytes, printing the ratio.

Run: ``python benchmarks/bench_pipeline.py [--quick]`` or ``vpp bench pipeline``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Row = dict[str, Any]


def _rust(frames: int, memory_frames: int) -> dict[str, Any]:
    cmd = [
        "cargo", "run", "--quiet", "--release", "--manifest-path",
        str(ROOT / "core_ext" / "Cargo.toml"), "-p", "vpp-rt", "--example", "bench_pipeline",
        "--", str(frames), str(memory_frames),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _reference_step(frame: bytes, cfg: Any, state: dict[str, float]) -> float:
    """A pure-Python pipeline step: decode with pyPMU, droop, ramp, clamp."""
    from tests.support.pypmu import DataFrame

    df = DataFrame.convert2frame(frame, cfg)
    f = 50.0 + df.get_freq() / 1000.0
    edge = 49.90 if f < 49.90 else 50.05 if f > 50.05 else f
    target = -(5.0 / 0.05) * (f - edge) / 50.0
    step = 5.0 * 0.02
    out = min(max(target, state["out"] - step), state["out"] + step)
    state["out"] = min(max(out, -5.0), 5.0)
    return state["out"]


def _per_call(fn: Any, blocks: list[list[Any]]) -> float:
    """Median over the blocks of the mean time per call (ns)."""
    means = []
    for items in blocks:
        t0 = time.perf_counter_ns()
        for it in items:
            fn(it)
        means.append((time.perf_counter_ns() - t0) / len(items))
    return statistics.median(means)


def _python(quick: bool) -> tuple[float, float]:
    from tests.support.pypmu import Stream
    from vpp.core import Pipeline, Telemetry

    s = Stream()
    repeats = 5 if quick else 30
    # Distinct frames for every block: the pipeline refuses a frame that is not newer
    # than the last, and a refusal is not what is measured here.
    blocks = [
        [s.frame(50.0 + 0.15 * ((k % 100) / 100 - 0.5))[1] for k in range(1000)]
        for _ in range(repeats)
    ]
    p = Pipeline()
    p.process(s.config_bytes())
    p.set_telemetry(
        Telemetry(
            timestamp=s.soc0 + 10.0, pack_voltage_v=52.8, current_a=0.0, temp_min_c=24.0,
            temp_max_c=25.0, soc_pct=50.0, cell_v_min=3.30, cell_v_max=3.31,
        )
    )  # fmt: skip
    ours = _per_call(lambda b: p.process(b, replay=True), blocks)
    assert p.stats()["decisions"] == 1000 * repeats
    state = {"out": 0.0}
    ref_blocks = [blocks[0][:200]] * (3 if quick else 10)
    ref = _per_call(lambda b: _reference_step(b, s.cfg, state), ref_blocks)
    return ours, ref


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (see vpp.bench)."""
    n, m = (200_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    r = _rust(n, m)
    growth = r["rss_max_kib"] - r["rss_samples_kib"][0]
    ours, ref = _python(quick)
    return [
        {"name": f"core per frame, median ({n} frames)", "value": r["median_ns"] / 1000,
         "unit": "us", "reference": None, "ratio": None, "target": "<= 1 us",
         "ok": r["median_ns"] <= 1000},
        {"name": "core per frame, p99", "value": r["p99_ns"] / 1000, "unit": "us",
         "reference": None, "ratio": None, "target": "-", "ok": None},
        {"name": "core per frame, p99.9", "value": r["p999_ns"] / 1000, "unit": "us",
         "reference": None, "ratio": None, "target": "<= 10 us", "ok": r["p999_ns"] <= 10_000},
        {"name": "core per frame, max", "value": r["max_ns"] / 1000, "unit": "us",
         "reference": None, "ratio": None, "target": "-", "ok": None},
        {"name": "heap allocations per frame", "value": r["allocations"] / n, "unit": "allocs",
         "reference": None, "ratio": None, "target": "0", "ok": r["allocations"] == 0},
        {"name": f"RSS growth over {m} frames", "value": float(growth), "unit": "KiB",
         "reference": f"{r['rss_samples_kib'][0]} KiB at start", "ratio": None,
         "target": "flat (0 KiB)", "ok": growth == 0},
        {"name": "Pipeline.process from Python", "value": ours / 1000, "unit": "us/frame",
         "reference": f"pyPMU + Python droop {ref / 1000:.1f} us", "ratio": ref / ours,
         "target": "-", "ok": None},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
