"""``vpp demo``: the core pipeline alone on a simulated PMU stream.

A simulated PMU encodes C37.118 frames (a CFG-2, then data frames at 10, 25 or 50
frames/s whose frequency follows a profile); each frame goes through the compiled
pipeline exactly as bytes from a real PMU would; the decision's setpoint drives a small
battery model whose telemetry feeds the safety envelope back. Frames are paced in real
time by the core's ticker (absolute monotonic deadlines) unless ``--fast``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import numpy as np

from vpp import c37118
from vpp.core import Decision, Pipeline
from vpp.sim.battery import SimBattery
from vpp.sim.frequency import FrequencyProfile

IDCODE = 1


def pmu_config(rate: int, soc: int) -> c37118.ConfigFrame:
    """CFG-2 of the simulated PMU: float polar phasors, float FREQ/DFREQ, 50 Hz nominal."""
    pmu = c37118.PmuConfig(
        "SIM PMU 1",
        IDCODE,
        0b1111,
        ["VA", "VB", "VC"],
        [0, 0, 0],
        fnom=50.0,
        cfgcnt=1,
    )
    return c37118.ConfigFrame("cfg2", IDCODE, [pmu], data_rate=rate, soc=soc)


def _clock(t: float) -> str:
    """Frame time as UTC clock time with hundredths."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 100) % 100:02d}"


def _status_line(d: Decision, soc: float) -> str:
    rocof = "   n/a" if d.rocof is None else f"{d.rocof:+6.3f}"
    band = d.band.label if d.band is not None else "-"
    return (
        f"{_clock(d.time)}  f={d.freq:7.4f} Hz  band={band:<13} rocof={rocof} Hz/s  "
        f"response={d.response_kw:+6.3f} kW  setpoint={d.setpoint_kw:+6.3f} kW  "
        f"SOC={soc:5.1f} %  safety={d.action.label}"
    )


def run(
    duration: float = 10.0,
    rate: int = 50,
    profile: str = "event",
    every: int = 0,
    as_json: bool = False,
    realtime: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Run the simulated stream through the pipeline and print decisions; returns 0."""
    every = every or rate
    freq = FrequencyProfile(kind=profile, magnitude=0.35 if profile == "oscillation" else -0.35)
    n = int(duration * rate)
    f = freq.at(np.arange(n) / rate)
    soc0 = int(time.time())
    cfg = pmu_config(rate, soc0)
    pipeline = Pipeline(p_max_kw=5.0, idcode=IDCODE)
    battery = SimBattery()
    pipeline.process(c37118.encode(cfg))
    ticker = None
    if realtime:
        from vpp.core import Ticker

        ticker = Ticker(period_s=1.0 / rate)
    phasors = [(230.0, 0.0), (230.0, -2.0944), (230.0, 2.0944)]
    summary: dict[str, Any] = {"frames": 0, "min_freq": 99.0, "max_response_kw": 0.0}
    if not as_json:
        print(
            f"vpp demo: simulated PMU at {rate} frames/s, profile '{profile}', "
            f"{duration:g} s; 5 kW / 10 kWh LFP battery; droop 5 % (full output 2.5 Hz "
            "beyond the deadband 49.90-50.05 Hz); times are the PMU's (UTC)",
            file=out,
        )
    try:
        for k in range(n):
            if ticker is not None:
                ticker.wait()
            fracsec = (k % rate) * (1_000_000 // rate)
            frame = c37118.DataFrame(
                cfg,
                [c37118.PmuData(phasors, float(f[k]), 0.0)],
                soc=soc0 + k // rate,
                fracsec=fracsec,
            )
            t = soc0 + k // rate + fracsec / 1e6
            pipeline.set_telemetry(battery.telemetry(t))
            # A simulation: the frames' own time is the clock (as in a replay).
            d = pipeline.process(c37118.encode(frame), replay=True)
            if d is None:
                continue
            battery.apply(d.setpoint_kw, 1.0 / rate)
            summary["frames"] += 1
            summary["min_freq"] = min(summary["min_freq"], d.freq)
            summary["max_response_kw"] = max(summary["max_response_kw"], d.response_kw)
            if k % every == every - 1 or d.transition is not None:
                if as_json:
                    out.write(json.dumps({**d.to_dict(), "soc_pct": battery.soc_pct}) + "\n")
                else:
                    print(_status_line(d, battery.soc_pct), file=out)
                out.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    stats = pipeline.stats()
    if not as_json:
        print(
            f"done: {stats['decisions']} decisions, {stats['error_total']} frame errors, "
            f"lowest frequency {summary['min_freq']:.4f} Hz, "
            f"largest response {summary['max_response_kw']:.3f} kW, "
            f"final SOC {battery.soc_pct:.2f} %",
            file=out,
        )
        if ticker is not None:
            st = ticker.stats()
            print(
                f"ticker: p99 lateness {st['p99'] * 1e3:.3f} ms, overruns {st['overruns']}",
                file=out,
            )
    return 0
