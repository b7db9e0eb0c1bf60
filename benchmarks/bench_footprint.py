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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp.bench import Row, row  # noqa: E402

FIELD_TARGET_MB = 60.0
SITE_TARGET_MB = 400.0
FIRST_DECISION_TARGET_S = 1.5
#: Processes of the simulation (not on a real site's RTU): the plant and the simulated
#: load despatch centre.
SIMULATORS = ("plant", "ldc")
_ENV = {
    "VPP__API__PORT": "0",
    "VPP__SCADA__IEC104__PORT": "0",
    "VPP__SCADA__DNP3__PORT": "0",
}


def _status_kb(pid: int | str, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def _pss_kb(pid: int | str) -> float:
    """PSS from smaps_rollup; NaN where the kernel does not let us read it."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return float(line.split()[1])
    return float("nan")


def _memory(pid: int | str) -> tuple[float, float]:
    """(RSS, PSS) in MB."""
    return _status_kb(pid, "VmRSS") / 1024, _pss_kb(pid) / 1024


def _bare_interpreter() -> tuple[float, float]:
    """RSS and PSS of an interpreter that imports nothing (the reference)."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"]) as p:
        time.sleep(1.0)  # started and settled; it sleeps for another second
        mem = _memory(p.pid)
        p.wait()
    return mem


def _children(ppid: int) -> set[int]:
    """The processes whose parent is ``ppid``."""
    out: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == ppid:
            out.add(int(stat.parent.name))
    return out


def _age_cpu_s(pid: int) -> tuple[float, float]:
    """Seconds since process ``pid`` started, and the CPU seconds it has used (user and
    system): clock-tick resolution, 10 ms."""
    # Fields after the command name (which may hold spaces): utime, stime are fields 14
    # and 15 of the line, starttime 22.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - int(fields[19]) / tick, (int(fields[11]) + int(fields[12])) / tick


async def _once(tmp: Path) -> tuple[dict[str, tuple[float, float]], float, dict[str, float]]:
    """One run: memory by process, Launcher.run to every unit deciding, and each field
    controller's own start to its first decision."""
    from vpp.config import load
    from vpp.orchestrator.bus import schema as s
    from vpp.orchestrator.launcher import Launcher

    site = load(env={**os.environ, **_ENV})
    field_of = {u.id: f.id for f in site.field for u in f.units}
    launcher = Launcher(site, history_path=tmp / "bench.db")
    stop = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(launcher.run(None, stop))
    try:
        while launcher.topo is None:
            await asyncio.sleep(0.01)
        # The bus is authenticated (keys made at start): read it as the viewer.
        sub = launcher.topo.subscriber("viewer", ("decision/",))
        own: dict[str, float] = {}
        seen: set[str] = set()
        try:
            deadline = time.monotonic() + 60.0
            while seen != set(field_of):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the site did not decide in time")
                for msg in await asyncio.wait_for(sub.recv_batch(), left):
                    if not isinstance(msg, s.DecisionMsg) or msg.body.unit in seen:
                        continue
                    seen.add(msg.body.unit)
                    field = field_of[msg.body.unit]
                    pid = launcher.procs[field].pid
                    if field not in own and pid is not None:
                        # The message's age (its ts is the sender's wall clock) is
                        # taken off: the decision was made when it was sent.
                        age, cpu = _age_cpu_s(pid)
                        own[field] = age - max(time.time() - msg.ts, 0.0)
                        own[f"{field} cpu"] = cpu
            up = time.monotonic() - t0
        finally:
            sub.close()
        # Let the roles finish their start (first dispatch, schedule, API's first poll).
        await asyncio.sleep(2.0)
        mem = {"launcher": _memory(os.getpid())}
        for name, m in launcher.procs.items():
            if m.pid is not None:
                mem[name] = _memory(m.pid)
        known = {m.pid for m in launcher.procs.values()}
        for pid in _children(os.getpid()) - known:
            # multiprocessing's resource tracker, which every spawn starts: the site's too.
            mem["mp-helper" if "mp-helper" not in mem else f"mp-helper-{pid}"] = _memory(pid)
        return mem, up, own
    finally:
        stop.set()
        await task


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
                refs.append(_bare_interpreter())
                mem, up, own = asyncio.run(_once(Path(d)))
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
