"""Memory and start-up of a site's processes (``vpp bench --commission`` and the
development benchmark ``bench_footprint``).

- RSS (``VmRSS`` of ``/proc/PID/status``): what a process holds in RAM, shared pages
  (the interpreter, shared libraries) counted in every process that maps them;
- PSS (``Pss`` of ``/proc/PID/smaps_rollup``, when readable): shared pages divided among
  the processes that share them, so the sum is what the site costs the machine.

The processes: the launcher (the caller's, with the broker and the history), each
role's, and multiprocessing's resource tracker (``mp-helper``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Not at run time: every process of the measured site imports this module again (it
    # is __main__'s), and a field controller's must not import the whole site's models.
    from vpp.config.models import SiteConfig

__all__ = ["SIMULATORS", "bare_interpreter", "measure_site", "memory", "ports_free"]

#: Processes of the simulation (not on a real site's RTU): the plant and the simulated
#: load despatch centre.
SIMULATORS = ("plant", "ldc")
#: The site's listening ports set to 0 (any free port), so a measurement runs beside a
#: site already running on the machine.
ports_free = {
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


def memory(pid: int | str) -> tuple[float, float]:
    """(RSS, PSS) in MB."""
    return _status_kb(pid, "VmRSS") / 1024, _pss_kb(pid) / 1024


def bare_interpreter() -> tuple[float, float]:
    """RSS and PSS of an interpreter that imports nothing (the reference)."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"]) as p:
        time.sleep(1.0)  # started and settled; it sleeps for another second
        mem = memory(p.pid)
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


async def measure_site(
    site: SiteConfig, tmp: Path
) -> tuple[dict[str, tuple[float, float]], float, dict[str, float]]:
    """Run ``site`` under a launcher (its history in ``tmp``) until every unit has
    decided, then 2 s more: (RSS, PSS) in MB by process, the seconds from
    ``Launcher.run`` to every unit deciding, and each field controller's own seconds from
    its process's start to its first decision (and, as ``"FIELD cpu"``, the CPU seconds
    it had used by then)."""
    from vpp.orchestrator.bus import schema as s
    from vpp.orchestrator.launcher import Launcher

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
        mem = {"launcher": memory(os.getpid())}
        for name, m in launcher.procs.items():
            if m.pid is not None:
                mem[name] = memory(m.pid)
        known = {m.pid for m in launcher.procs.values()}
        for pid in _children(os.getpid()) - known:
            # multiprocessing's resource tracker, which every spawn starts: the site's too.
            mem["mp-helper" if "mp-helper" not in mem else f"mp-helper-{pid}"] = memory(pid)
        return mem, up, own
    finally:
        stop.set()
        await task


def _main() -> None:
    """``python -m vpp.commission.footprint``: the site (JSON) on standard input, the
    figures (JSON) on standard output. A process of its own, so that the launcher's
    memory is a launcher's, not that of whatever measured before it."""
    import json
    import tempfile

    from vpp.config.models import SiteConfig

    site = SiteConfig.model_validate_json(sys.stdin.read())
    with tempfile.TemporaryDirectory(prefix="vpp-footprint-") as d:
        os.environ["VPP_RUN_DIR"] = d
        mem, up, own = asyncio.run(measure_site(site, Path(d)))
    print(json.dumps({"memory": mem, "up": up, "own": own}))


if __name__ == "__main__":
    _main()
