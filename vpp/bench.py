"""Run the benchmark suite in ``benchmarks/`` and print a table (or JSON).

Each ``benchmarks/bench_*.py`` script exposes ``run(quick: bool) -> list[dict]`` whose
rows carry ``name, value, unit, reference, ratio, target, ok``. Benchmarks measure
against a reference in the same run, so the ratios hold on a noisy shared machine
even when the absolute figures drift.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from vpp.validation import config_error

Row = dict[str, Any]

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


async def child_output(*args: str, timeout: float, **options: Any) -> bytes:
    """Run ``args`` as a child process and return its standard output; the child is
    killed if it outlives ``timeout`` or the caller is cancelled. A benchmark's own parts
    run as scripts: ``vpp bench`` loads a benchmark under another module name, which
    multiprocessing's spawn could not import."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, **options)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values`` in any order; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), math.ceil(q * len(ordered)))) - 1]


def row(
    name: str,
    value: float,
    unit: str,
    *,
    reference: str | None = None,
    ratio: float | None = None,
    target: str = "-",
    ok: bool | None = None,
    minimum: float | None = None,
) -> Row:
    """One benchmark row. With ``minimum``, ``ok`` is whether ``ratio`` reaches it."""
    if minimum is not None and ratio is not None:
        ok = ratio >= minimum
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "reference": reference,
        "ratio": ratio,
        "target": target,
        "ok": ok,
    }


def discover(bench_dir: Path = BENCH_DIR) -> dict[str, Path]:
    """Benchmark scripts by short name (``bench_decode.py`` -> ``decode``)."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(bench_dir.glob("bench_*.py"))}


def _load(path: Path) -> Callable[..., list[Row]]:
    spec = importlib.util.spec_from_file_location(f"vpp_bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load benchmark {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run: Callable[..., list[Row]] = module.run
    return run


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def run(names: Sequence[str] | None = None, quick: bool = False) -> list[Row]:
    """Run the named benchmarks (all when ``names`` is empty) and return their rows."""
    found = discover()
    if not found:
        raise config_error(f"no benchmarks in {BENCH_DIR} (run from a source checkout)", "names")
    selected = list(names) if names else list(found)
    unknown = [n for n in selected if n not in found]
    if unknown:
        raise config_error(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(found))}",
            "names",
        )
    rows: list[Row] = []
    for name in selected:
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        for row in _load(found[name])(quick=quick):
            rows.append({"bench": name, **row})
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(rows: Sequence[Row], out: TextIO = sys.stdout) -> None:
    """Print rows as an aligned plain-text table."""
    header = ["benchmark", "figure", "value", "unit", "reference", "ratio", "target", "ok"]
    table = [header] + [
        [
            str(r.get("bench", "")),
            str(r["name"]),
            _fmt(r.get("value")),
            str(r.get("unit", "")),
            _fmt(r.get("reference")),
            _fmt(r.get("ratio")),
            str(r.get("target", "")),
            _fmt(r.get("ok")),
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


def print_json(rows: Sequence[Row], out: TextIO = sys.stdout) -> None:
    """Print the machine description and the rows as one JSON document."""
    json.dump({"machine": machine(), "results": list(rows)}, out, indent=2)
    out.write("\n")
