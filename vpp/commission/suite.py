"""``vpp bench --commission``: measure on the target what a deployment depends on and
compare each figure with the site's requirements (``commissioning`` in the site
configuration, docs/deploy.md).

The figures, each measured here, on this machine, with what ships in the package (no
source tree, no test dependencies, no foreign implementations):

- the site's own inverters and BMSs, when its simulation is off: reachable, poll time
  and a usable status, READ ONLY (:mod:`vpp.commission.devices`);
- the per-frame pipeline (C37.118 decode, estimate, droop, envelope) called from Python;
- the core's ticker (the field loop's 100 ms step): how late it wakes;
- PMU frame sent -> setpoint written at the inverter's Modbus server, through the field
  controller's real-time loop and its Modbus writer, against the bundled simulators
  (:mod:`vpp.commission.e2e`), with the asyncio path beside it as the reference;
- memory of each of the site's processes and a field controller's start to its first
  decision, the site run under the launcher (:mod:`vpp.commission.footprint`). A site
  whose simulation is off would drive its real devices: the embedded simulated site is
  measured instead, and the record says so.

Real-time settings (:mod:`vpp.commission.settings`) are reported with what to change; a
refused SCHED_FIFO or memory lock fails commissioning only with
``commissioning.realtime_required``.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vpp.bench import machine, percentile
from vpp.commission.settings import Setting, check_settings
from vpp.config.models import SiteConfig

__all__ = ["Commissioning", "Figure", "run_commission"]

#: Packages whose versions go into the record.
_PACKAGES = ("vpp", "numpy", "pydantic", "pyzmq", "pymodbus", "scipy")


@dataclass
class Figure:
    """One measured figure and, where it has one, its requirement."""

    name: str
    value: float
    unit: str
    limit: float | None = None
    """The requirement (the figure must not exceed it); None: reported only."""
    reference: str = ""
    """What the figure is measured beside (in the same run)."""
    at_least: bool = False
    """The figure must reach ``limit`` instead."""

    @property
    def ok(self) -> bool | None:
        """Whether the requirement is met; None without one (NaN fails)."""
        if self.limit is None:
            return None
        if self.value != self.value:
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def requirement(self) -> str:
        """The requirement as text (``<= 1 ms``), or ``-``."""
        if self.limit is None:
            return "-"
        return f"{'>=' if self.at_least else '<='} {self.limit:g} {self.unit}"


@dataclass
class Commissioning:
    """The outcome: figures, settings, and whether everything required passed."""

    figures: list[Figure] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    realtime_required: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """What failed, one line each."""
        out = [
            f"{f.name}: {f.value:.4g} {f.unit}, required {f.requirement}"
            for f in self.figures
            if f.ok is False
        ]
        if self.realtime_required:
            out += [
                f"{s.name}: {s.value}"
                for s in self.settings
                if s.name in ("SCHED_FIFO", "memory locking") and s.status == "short"
            ]
        return out

    @property
    def passed(self) -> bool:
        """Every requirement met."""
        return not self.failures

    def record(self) -> dict[str, Any]:
        """The JSON record for the commissioning file."""
        versions: dict[str, str | None] = {}
        for name in _PACKAGES:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = None
        return {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {
                **machine(),
                "kernel": platform.version(),
                "arch": platform.machine(),
                "hostname": platform.node(),
                "memory_mb": _memory_mb(),
            },
            "versions": versions,
            "passed": self.passed,
            "failures": self.failures,
            "figures": [{**asdict(f), "ok": f.ok} for f in self.figures],
            "settings": [asdict(s) for s in self.settings],
            "notes": self.notes,
        }


def _memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def pipeline_us(frames: int) -> float:
    """Median over blocks of the mean time (us) of ``Pipeline.process`` on one raw data
    frame, called from Python: what the asyncio path pays per frame and unit."""
    from vpp import c37118 as c
    from vpp.commission.e2e import Sawtooth
    from vpp.core import Pipeline
    from vpp.sim.pmu import PmuServer

    pmu = PmuServer(port=0, rate=50, source=Sawtooth())
    cfg = c.encode(pmu.config)
    raw = [pmu.data_frame(k) for k in range(frames)]
    means = []
    block = max(1, frames // 10)
    for start in range(0, frames - block + 1, block):
        # A fresh pipeline for every block: it refuses a frame not newer than the last.
        p = Pipeline(p_max_kw=500.0)
        p.process(cfg)
        t0 = time.perf_counter_ns()
        for b in raw[start : start + block]:
            p.process(b, replay=True)
        means.append((time.perf_counter_ns() - t0) / block / 1000)
    return statistics.median(means)


def ticker_late_ms(seconds: float) -> tuple[float, float, bool]:
    """The core's ticker at 100 ms for ``seconds`` under SCHED_FIFO where allowed: its
    lateness p50 and p99 (ms) and whether it ran under SCHED_FIFO."""
    from vpp.core import Ticker

    late: list[float] = []
    fifo: list[bool] = []

    def tick() -> None:
        # In a thread of its own: SCHED_FIFO is the thread's, not the rest of the run's.
        ticker = Ticker(period_s=0.1, realtime=True, priority=50)
        fifo.append(ticker.realtime_status["sched_fifo"])
        for _ in range(max(1, int(seconds / 0.1))):
            deadline = ticker.next_deadline
            ticker.wait()
            late.append((time.monotonic() - deadline) * 1e3)

    thread = threading.Thread(target=tick, name="commission ticker")
    thread.start()
    thread.join()
    return percentile(late, 0.5), percentile(late, 0.99), bool(fifo and fifo[0])


def _measured_site(site: SiteConfig, notes: list[str]) -> SiteConfig:
    """The site whose processes are measured: ``site`` when it simulates its devices,
    else the embedded simulated site (a commissioning run must not drive real devices)."""
    from vpp.config import load

    if site.simulation.enabled:
        base = site
    else:
        notes.append(
            "memory and start-up measured on the embedded simulated site: this "
            "site's simulation is off and its devices are real"
        )
        base = load()
    data = base.model_dump(mode="json")
    # Any free port: the measurement may run beside a site already serving.
    data["api"]["port"] = 0
    for proto in ("iec104", "dnp3"):
        data["scada"][proto]["port"] = 0
    return SiteConfig.model_validate(data)


def _footprint(
    site: SiteConfig,
) -> tuple[dict[str, tuple[float, float]], float, dict[str, float]]:
    """:func:`vpp.commission.footprint.measure_site` in a process of its own (see there)."""
    proc = subprocess.run(
        [sys.executable, "-m", "vpp.commission.footprint"],
        input=site.model_dump_json(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the site did not start for the memory figures: {last}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    mem = {k: (float(v[0]), float(v[1])) for k, v in got["memory"].items()}
    return mem, float(got["up"]), {k: float(v) for k, v in got["own"].items()}


def run_commission(site: SiteConfig, quick: bool = False, log: Any = None) -> Commissioning:
    """Measure everything (see the module docstring) and compare it with
    ``site.commissioning``; ``log(text)`` is told what runs (default: nothing)."""
    from vpp.commission import e2e
    from vpp.commission.devices import run_device_checks

    say = log or (lambda _text: None)
    req = site.commissioning
    out = Commissioning(realtime_required=req.realtime_required)
    out.settings = check_settings()
    if not site.simulation.enabled:
        say("the site's own devices, read only")
    out.figures += run_device_checks(site, quick, out.notes)
    say("per-frame pipeline")
    out.figures.append(
        Figure(
            "pipeline per frame, from Python, median",
            pipeline_us(2_000 if quick else 20_000),
            "us",
            req.pipeline_us,
        )
    )
    say("ticker lateness")
    p50, p99, rt = ticker_late_ms(3.0 if quick else 10.0)
    out.figures.append(
        Figure(
            "ticker (100 ms) lateness, p99",
            p99,
            "ms",
            req.ticker_late_p99_ms,
            reference=f"p50 {p50:.3g} ms; SCHED_FIFO {'yes' if rt else 'no'}",
        )
    )
    units = max(1, max(len(f.units) for f in site.field))
    seconds = 6.0 if quick else 20.0
    say(f"frame -> setpoint, {units} units, {seconds:g} s each path")
    lat, st = asyncio.run(e2e.measure(True, "quiet", seconds, units=units))
    ref, _ = asyncio.run(e2e.measure(False, "quiet", seconds, units=units))
    for q, name, limit in (
        (0.5, "p50", req.frame_to_setpoint_p50_ms),
        (0.99, "p99", req.frame_to_setpoint_p99_ms),
        (1.0, "max", req.frame_to_setpoint_max_ms),
    ):
        ours = percentile(lat, q) if q < 1 else max(lat, default=float("nan"))
        theirs = percentile(ref, q) if q < 1 else max(ref, default=float("nan"))
        out.figures.append(
            Figure(
                f"frame -> setpoint, {units} units, real-time loop, {name}",
                ours,
                "ms",
                limit,
                reference=f"asyncio path {theirs:.3g} ms",
            )
        )
    # Without matched writes the figures above are NaN (failed): this says why.
    out.figures.append(
        Figure(
            "frame -> setpoint, writes matched to frames",
            len(lat),
            "writes",
            1,
            at_least=True,
            reference=f"{st['sent']} frames sent; loop under SCHED_FIFO "
            f"{st['realtime']}, memory locked {st['memory_locked']}",
        )
    )
    say("memory and start-up of the site's processes")
    measured = _measured_site(site, out.notes)
    mem, up, own = _footprint(measured)
    fields = {f.id for f in measured.field}
    for name, (rss, _pss) in mem.items():
        out.figures.append(
            Figure(f"RSS {name}", rss, "MB", req.field_rss_mb if name in fields else None)
        )
    total = sum(rss for rss, _ in mem.values())
    out.figures.append(Figure(f"RSS total ({len(mem)} processes)", total, "MB", req.site_rss_mb))
    for fid in sorted(k for k in own if not k.endswith(" cpu")):
        out.figures.append(
            Figure(
                f"{fid}: process start to first decision",
                own[fid],
                "s",
                req.first_decision_s,
                reference=f"CPU used {own[f'{fid} cpu']:.2f} s",
            )
        )
    out.figures.append(Figure("site start-up: launcher to every unit deciding", up, "s"))
    return out
