"""Memory and start-up of the embedded default site (issue 12, "Footprint").

The site (plant, two field controllers, campus, grid, market, api, scada, ldc, and the
launcher with the broker) starts in-process with the launcher, its listening ports set
to 0 and its run directory in a temporary directory. Once every unit has published a
decision (the site is working, and each role has imported what it uses at start) it
reads, for every process:

- RSS (``VmRSS`` of ``/proc/PID/status``): what the process holds in RAM, shared pages
  (the interpreter, shared libraries) counted in every process that maps them;
- PSS (``Pss`` of ``/proc/PID/smaps_rollup``, when readable): shared pages divided among
  the processes that share them, so the sum is what the site costs the machine.

The processes: the launcher (this process, with the broker and the history), each
role's, and multiprocessing's resource tracker (``mp-helper``, started by the first
spawn). Totals are also given without the simulators (``plant``, ``ldc``), which a real
site does not run.

Targets: a field controller at most 60 MB RSS, the whole site at most 400 MB RSS.

Start-up: from ``Launcher.run`` to the first decision of every unit (spawning the plant,
then nine processes at once on the machine's cores), and the field controllers' own
time, from their process's start (``/proc/PID/stat``) to their first decision on the bus
(target 1.5 s, "start to first decision"), with the CPU time the controller had used by
then: the wall time depends on what else starts beside it, the CPU time does not.

Reference, in the same run: the RSS (and PSS) of a bare interpreter
(``python3 -c "import time; time.sleep(2)"``); ratios are to it. Medians of 3 runs (1
with ``--quick``). Run ``python benchmarks/bench_footprint.py [--quick]`` or
``vpp bench footprint``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp.bench import Row, row  # noqa: E402
from vpp.commission.footprint import SIMULATORS, bare_interpreter, measure_site, ports_free  # noqa: E402
from vpp.config import load  # noqa: E402

FIELD_TARGET_MB = 60.0
SITE_TARGET_MB = 400.0
FIRST_DECISION_TARGET_S = 1.5


def _median(runs: list[dict[str, tuple[float, float]]], i: int) -> Callable[[str], float]:
    return lambda name: statistics.median(r[name][i] for r in runs if name in r)


def run(quick: bool = False) -> list[Row]:
    """Benchmark rows (quick: one run instead of three)."""
    n = 1 if quick else 3
    refs: list[tuple[float, float]] = []
    mems: list[dict[str, tuple[float, float]]] = []
    ups: list[float] = []
    owns: list[dict[str, float]] = []
    saved = {k: os.environ.get(k) for k in ("VPP_RUN_DIR",)}
    with tempfile.TemporaryDirectory(prefix="vppbench-") as d:
        os.environ["VPP_RUN_DIR"] = d
        try:
            for _ in range(n):
                refs.append(bare_interpreter())
                site = load(env={**os.environ, **ports_free})
                mem, up, own = asyncio.run(measure_site(site, Path(d)))
                mems.append(mem)
                ups.append(up)
                owns.append(own)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    ref_rss = statistics.median(r[0] for r in refs)
    ref_pss = statistics.median(r[1] for r in refs)
    rss, pss = _median(mems, 0), _median(mems, 1)
    names = list(mems[0])
    rows: list[Row] = []
    for name in names:
        is_field = name.startswith("field-")
        rows.append(row(
            f"RSS {name}", rss(name), "MB", reference="bare interpreter",
            ratio=rss(name) / ref_rss, target=f"<= {FIELD_TARGET_MB:g}" if is_field else "-",
            ok=rss(name) <= FIELD_TARGET_MB if is_field else None,
        ))  # fmt: skip
    total_rss = statistics.median(sum(v[0] for v in m.values()) for m in mems)
    total_pss = statistics.median(sum(v[1] for v in m.values()) for m in mems)
    rows.append(row(
        f"RSS total ({len(names)} processes)", total_rss, "MB", reference="bare interpreter",
        ratio=total_rss / ref_rss, target=f"<= {SITE_TARGET_MB:g}",
        ok=total_rss <= SITE_TARGET_MB,
    ))  # fmt: skip
    prod = [n for n in names if n not in SIMULATORS]
    prod_rss = statistics.median(sum(v[0] for k, v in m.items() if k in prod) for m in mems)
    rows.append(row(
        f"RSS total without the simulators ({len(prod)} processes)", prod_rss, "MB",
        reference="bare interpreter", ratio=prod_rss / ref_rss,
    ))  # fmt: skip
    for name in names:
        rows.append(row(f"PSS {name}", pss(name), "MB", reference="bare interpreter",
                        ratio=pss(name) / ref_pss))  # fmt: skip
    rows.append(row(f"PSS total ({len(names)} processes)", total_pss, "MB",
                    reference="bare interpreter", ratio=total_pss / ref_pss))  # fmt: skip
    prod_pss = statistics.median(sum(v[1] for k, v in m.items() if k in prod) for m in mems)
    rows.append(row(f"PSS total without the simulators ({len(prod)} processes)", prod_pss,
                    "MB", reference="bare interpreter", ratio=prod_pss / ref_pss))  # fmt: skip
    rows.append(row("RSS bare interpreter (reference)", ref_rss, "MB"))
    rows.append(row("PSS bare interpreter (reference)", ref_pss, "MB"))
    up = statistics.median(ups)
    rows.append(row("site start-up: Launcher.run to every unit deciding", up, "s"))
    for fid in sorted(k for k in owns[0] if not k.endswith(" cpu")):
        own_s = statistics.median(o[fid] for o in owns if fid in o)
        rows.append(row(
            f"{fid}: process start to first decision", own_s, "s",
            target=f"<= {FIRST_DECISION_TARGET_S:g}", ok=own_s <= FIRST_DECISION_TARGET_S,
        ))  # fmt: skip
        cpu_s = statistics.median(o[f"{fid} cpu"] for o in owns if f"{fid} cpu" in o)
        rows.append(row(f"{fid}: CPU time used by its first decision", cpu_s, "s"))
    rows.append(row("runs (median of)", float(n), "runs"))
    rows.append(row("load average (1 min) at the end", os.getloadavg()[0], "-"))
    return rows


if __name__ == "__main__":
    from vpp.bench import print_table

    print_table(run("--quick" in sys.argv))
