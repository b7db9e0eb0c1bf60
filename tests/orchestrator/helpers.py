"""Random fleets for the campus tests: a hypothesis strategy and a builder."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from vpp.orchestrator.campus.fleet import Fleet

TIMEOUT = 5.0
NOW = 100.0


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit of a generated fleet, with everything the fleet will be told."""

    uid: str
    location: tuple[str, ...]
    rated_charge: float
    rated_discharge: float
    energy: float
    efficiency: float
    seen: float  # last heartbeat time
    telemetry: tuple[float, float, float, float, int] | None  # power, soc, ch, dis, safety


def _finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def units(draw: st.DrawFn, max_units: int = 30, all_online: bool = False) -> list[Unit]:
    """A list of distinct units over a small location tree (so groups share units)."""
    n = draw(st.integers(1, max_units))
    out = []
    for i in range(n):
        loc = (
            "IN",
            f"S{draw(st.integers(0, 1))}",
            f"C{draw(st.integers(0, 2))}",
            f"K{draw(st.integers(0, 2))}",
            f"B{draw(st.integers(0, 3))}",
            f"n{i}",
        )
        seen = NOW if all_online else draw(st.sampled_from([NOW, NOW - TIMEOUT - 1.0, NOW - 1.0]))
        rated_c = draw(_finite(0.0, 500.0))
        rated_d = draw(_finite(0.0, 500.0))
        tel = None
        if all_online or draw(st.booleans()) or draw(st.booleans()):
            tel = (
                draw(_finite(-500.0, 500.0)),
                draw(_finite(0.0, 100.0)),
                draw(_finite(0.0, 600.0)),
                draw(_finite(0.0, 600.0)),
                0 if all_online else draw(st.sampled_from([0, 0, 0, 2, 3, 4])),
            )
        out.append(
            Unit(
                uid=f"u{i}",
                location=loc,
                rated_charge=rated_c,
                rated_discharge=rated_d,
                energy=draw(_finite(1.0, 2000.0)),
                efficiency=draw(_finite(0.5, 1.0)),
                seen=seen,
                telemetry=tel,
            )
        )
    return out


def build(fleet_units: list[Unit], capacity: int = 4) -> Fleet:
    """A fleet told about ``fleet_units`` (a small initial capacity so it must grow)."""
    from vpp.orchestrator.campus.config import FleetConfig

    fleet = Fleet(FleetConfig(offline_timeout_s=TIMEOUT, initial_capacity=capacity))
    for u in fleet_units:
        fleet.heartbeat(
            u.uid,
            u.location,
            rated_charge_kw=u.rated_charge,
            rated_discharge_kw=u.rated_discharge,
            energy_kwh=u.energy,
            efficiency=u.efficiency,
            timestamp=u.seen - 2.0 if u.telemetry else u.seen,
        )
        if u.telemetry is not None:
            fleet.telemetry(u.uid, *u.telemetry, timestamp=u.seen)
    return fleet
