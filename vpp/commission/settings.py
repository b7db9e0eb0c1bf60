"""The machine's real-time settings, checked and reported with what to change.

What the field controller's real-time loop asks of the kernel (docs/realtime-loop.md):
SCHED_FIFO for its thread and locked memory; what helps it keep its timing: the CPU
frequency governor at ``performance``, CPUs isolated from the scheduler for the loop,
and a fast clock source. Each check reads ``/proc`` and ``/sys`` (or, for SCHED_FIFO,
tries it on a short-lived thread), never changes the machine, and says what to change
when the setting falls short. A check that cannot be read here (no cpufreq in a virtual
machine) is ``unknown``, not a failure.
"""

from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Setting", "check_settings"]

Status = Literal["ok", "short", "unknown"]

# Capability bits of /proc/self/status CapEff (linux/capability.h).
_CAP_IPC_LOCK = 14
_CAP_SYS_NICE = 23
_FAST_CLOCKS = ("tsc", "arch_sys_counter", "kvm-clock")


@dataclass(frozen=True)
class Setting:
    """One checked setting: what was found, whether it serves the loop, what to do."""

    name: str
    value: str
    status: Status
    advice: str = ""


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _capabilities() -> int:
    text = _read("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _governor() -> Setting:
    cpus = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor"))
    found = {p.read_text().strip() for p in cpus if p.exists()}
    if not found:
        return Setting(
            "cpu governor",
            "none (no cpufreq)",
            "unknown",
            "no frequency scaling (a virtual machine, or fixed clocks)",
        )
    value = ",".join(sorted(found))
    if found == {"performance"}:
        return Setting("cpu governor", value, "ok")
    return Setting(
        "cpu governor",
        value,
        "short",
        "set every CPU's governor to performance (cpupower frequency-set "
        "-g performance, or cpufreq.default_governor=performance)",
    )


def _try_fifo(out: list[bool]) -> None:
    try:
        # pid 0: the calling thread only (Linux), which ends right after.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        out.append(True)
    except (OSError, AttributeError):
        out.append(False)


def _sched_fifo() -> Setting:
    got: list[bool] = []
    t = threading.Thread(target=_try_fifo, args=(got,), name="sched_fifo check")
    t.start()
    t.join()
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    cap = bool(_capabilities() >> _CAP_SYS_NICE & 1)
    granted = bool(got and got[0])
    value = (
        f"{'granted' if granted else 'refused'} (RLIMIT_RTPRIO {soft}, "
        f"CAP_SYS_NICE {'yes' if cap else 'no'})"
    )
    if granted:
        return Setting("SCHED_FIFO", value, "ok")
    return Setting(
        "SCHED_FIFO",
        value,
        "short",
        "grant CAP_SYS_NICE to the service (systemd: AmbientCapabilities="
        "CAP_SYS_NICE) or LimitRTPRIO=60; the loop runs at priority 50",
    )


def _mlock() -> Setting:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    cap = bool(_capabilities() >> _CAP_IPC_LOCK & 1)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
    value = f"RLIMIT_MEMLOCK {limit}, CAP_IPC_LOCK {'yes' if cap else 'no'}"
    # The loop locks its process's memory (mlockall): a field controller's ~60 MB.
    if cap or soft == resource.RLIM_INFINITY or soft >= 256 * 1024 * 1024:
        return Setting("memory locking", value, "ok")
    return Setting(
        "memory locking",
        value,
        "short",
        "grant CAP_IPC_LOCK (systemd: AmbientCapabilities=CAP_IPC_LOCK) or "
        "LimitMEMLOCK=infinity, so page faults cannot stall the loop",
    )


def _isolated() -> Setting:
    text = _read("/sys/devices/system/cpu/isolated")
    if text is None:
        return Setting("isolated CPUs", "unknown", "unknown")
    if text:
        return Setting("isolated CPUs", text, "ok")
    return Setting(
        "isolated CPUs",
        "none",
        "short",
        "on 4 cores or more, isolate one for the loop: kernel command line "
        "isolcpus=3 nohz_full=3 rcu_nocbs=3 (optional on 2 cores)",
    )


def _clocksource() -> Setting:
    text = _read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    if text is None:
        return Setting("clock source", "unknown", "unknown")
    if text in _FAST_CLOCKS:
        return Setting("clock source", text, "ok")
    avail = _read("/sys/devices/system/clocksource/clocksource0/available_clocksource") or ""
    return Setting(
        "clock source",
        text,
        "short",
        f"a slow clock makes every timestamp a system call; available: {avail} "
        "(kernel command line clocksource=tsc, or arch_sys_counter on ARM)",
    )


def _preempt() -> Setting:
    version = _read("/proc/version") or ""
    rt = "PREEMPT_RT" in version or "PREEMPT RT" in version
    preempt = rt or "PREEMPT" in version
    value = "PREEMPT_RT" if rt else ("PREEMPT" if preempt else "none (server)")
    if preempt:
        return Setting("kernel preemption", value, "ok")
    return Setting(
        "kernel preemption",
        value,
        "short",
        "a PREEMPT or PREEMPT_RT kernel bounds the loop's wake-up latency "
        "(Debian: linux-image-rt-arm64 / linux-image-rt-amd64)",
    )


def check_settings() -> list[Setting]:
    """Every real-time setting, in the order the report prints them."""
    return [_sched_fifo(), _mlock(), _governor(), _isolated(), _clocksource(), _preempt()]
