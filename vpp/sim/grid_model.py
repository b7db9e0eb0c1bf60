"""A single-area grid frequency model with an external power injection (the fleet).

Per unit on the system base ``base_mw`` (S) and nominal frequency f0, with
``w = (f - f0) / f0``:

    2H dw/dt   = Pm + Pb - PL - D w                  swing equation with load damping
    Tg dx/dt   = -w / R - x                          governor (droop R, time constant Tg)
    Trh dy/dt  = x - y                               reheat stage (Trh = 0: none)
    Pm         = Fhp x + (1 - Fhp) y                 turbine output (Pm = x without reheat)

``PL`` is the sum of the scheduled :class:`GridEvent` steps (MW / S, positive = a
deficit: load added or generation lost) and ``Pb`` the fleet's power (kW / 1000 / S,
positive = discharge, which raises frequency). The governor valve ``x`` is clamped to
``+-governor_limit_pu`` when set. Integration is fixed-step RK4 with sub-steps of at
most ``max_step_s``, split exactly at event times, so a run is deterministic and does
not depend on how the caller chops time. Checks in tests/sim/test_grid_model.py: the
ROCOF right after a step is -dP f0 / (2 H S) and the settled deviation is
-dP / (D + 1/R) per unit.

:class:`GridFrequencySource` lets a :class:`~vpp.sim.pmu.PmuServer` stream the model's
frequency, so a fleet that sets :attr:`GridModel.fleet_kw` sees its own effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vpp.sim.config import GridModelConfig
from vpp.validation import config_error

__all__ = [
    "GridEvent",
    "GridFrequencySource",
    "GridModel",
    "GridModelConfig",
    "GridRun",
    "generation_loss",
]

FloatArray = NDArray[np.float64]
#: Model state: frequency deviation w, governor valve x, reheat stage y (all pu).
State = tuple[float, float, float]
#: A controller in the loop: (t s, f Hz, rocof Hz/s) -> fleet power kW.
FleetController = Callable[[float, float, float], float]


@dataclass(frozen=True)
class GridEvent:
    """A power step at ``time_s`` (s from the start): ``delta_mw`` > 0 is a deficit
    (load connected, generation lost), < 0 a surplus (load lost)."""

    time_s: float
    delta_mw: float
    label: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_s) and self.time_s >= 0):
            raise config_error(f"grid event time must be >= 0 s, got {self.time_s}", "time_s")
        if not math.isfinite(self.delta_mw):
            raise config_error(f"grid event size must be finite, got {self.delta_mw}", "delta_mw")


def generation_loss(time_s: float, fraction: float, base_mw: float) -> GridEvent:
    """The trip of a generator of ``fraction`` of the system base at ``time_s``."""
    return GridEvent(time_s, fraction * base_mw, f"loss of {fraction:.1%} generation")


@dataclass(frozen=True)
class GridRun:
    """Samples of a :meth:`GridModel.run`: times (s), frequency (Hz), ROCOF (Hz/s) and the
    fleet power (kW) that was applied over the step starting at each time."""

    t: FloatArray
    f: FloatArray
    rocof: FloatArray
    fleet_kw: FloatArray


class GridModel:
    """The model of the module docstring, starting in steady state at f0 at t = 0 s."""

    def __init__(
        self, config: GridModelConfig | None = None, events: Iterable[GridEvent] = ()
    ) -> None:
        self.config = config if config is not None else GridModelConfig()
        self._events = sorted(events, key=lambda e: e.time_s)
        self._next = 0
        self.t = 0.0
        self._s: State = (0.0, 0.0, 0.0)
        self._load_pu = 0.0
        self._fleet_kw = 0.0
        self._apply_due_events()

    # ---- inputs ----

    @property
    def fleet_kw(self) -> float:
        """The fleet's total injection (kW, positive = discharge), held until changed."""
        return self._fleet_kw

    @fleet_kw.setter
    def fleet_kw(self, kw: float) -> None:
        if not math.isfinite(kw):
            raise config_error(f"fleet power must be finite, got {kw}", "fleet_kw")
        self._fleet_kw = float(kw)

    def add_event(self, event: GridEvent) -> None:
        """Schedule ``event``; one at or before the current time applies at once."""
        pending = [*self._events[self._next :], event]
        self._events = self._events[: self._next] + sorted(pending, key=lambda e: e.time_s)
        self._apply_due_events()

    @property
    def events(self) -> list[GridEvent]:
        """Every scheduled event, applied or not, in time order."""
        return list(self._events)

    # ---- outputs ----

    @property
    def frequency(self) -> float:
        """Frequency now, Hz."""
        return self.config.nominal_hz * (1.0 + self._s[0])

    @property
    def rocof(self) -> float:
        """df/dt now (Hz/s), from the swing equation with the current inputs."""
        return self.config.nominal_hz * self._deriv(self._s, self._fleet_pu())[0]

    @property
    def load_mw(self) -> float:
        """The net deficit of the applied events, MW."""
        return self._load_pu * self.config.base_mw

    @property
    def mechanical_mw(self) -> float:
        """The turbines' output change from the initial dispatch, MW."""
        return self._mech_pu(self._s) * self.config.base_mw

    # ---- integration ----

    def step(self, dt: float) -> float:
        """Advance by ``dt`` seconds (events inside the step apply at their time); the
        frequency at the end, Hz."""
        if not (math.isfinite(dt) and dt >= 0):
            raise config_error(f"step must be a finite time >= 0 s, got {dt}", "dt")
        return self.advance_to(self.t + dt)

    def advance_to(self, t: float) -> float:
        """Advance to time ``t`` (s from the start; no-op if already there or past); the
        frequency at ``t``, Hz. Events at or before ``t`` have been applied on return."""
        if not math.isfinite(t):
            raise config_error(f"time must be finite, got {t}", "t")
        while self.t < t:
            stop = t
            if self._next < len(self._events):
                stop = min(stop, self._events[self._next].time_s)
            self._integrate(stop - self.t)
            self.t = stop
            self._apply_due_events()
        return self.frequency

    def run(self, duration: float, dt: float, controller: FleetController | None = None) -> GridRun:
        """Sample every ``dt`` for ``duration`` s; ``controller`` (if any) sets the fleet
        power from the sample before each step, as a fleet in the loop would."""
        if not (math.isfinite(dt) and dt > 0):
            raise config_error(f"sample interval must be > 0 s, got {dt}", "dt")
        if not (math.isfinite(duration) and duration >= 0):
            raise config_error(f"duration must be >= 0 s, got {duration}", "duration")
        n = round(duration / dt) + 1
        t, f, r, p = (np.empty(n) for _ in range(4))
        t0 = self.t
        for k in range(n):
            # Times from the index, not by summing dt, so samples land on event times.
            self.advance_to(t0 + k * dt)
            t[k], f[k], r[k] = self.t, self.frequency, self.rocof
            if controller is not None:
                self.fleet_kw = controller(t[k], f[k], r[k])
                r[k] = self.rocof
            p[k] = self._fleet_kw
        return GridRun(t, f, r, p)

    def _fleet_pu(self) -> float:
        return self._fleet_kw / 1000.0 / self.config.base_mw

    def _valve(self, x: float) -> float:
        lim = self.config.governor_limit_pu
        return x if lim is None else min(max(x, -lim), lim)

    def _mech_pu(self, s: State) -> float:
        c = self.config
        x = self._valve(s[1])
        return x if c.reheat_time_s == 0 else c.hp_fraction * x + (1.0 - c.hp_fraction) * s[2]

    def _deriv(self, s: State, pb: float) -> State:
        c = self.config
        w, _, y = s
        x = self._valve(s[1])
        dw = (self._mech_pu(s) + pb - self._load_pu - c.damping_pu * w) / (2 * c.inertia_s)
        dx = (-w / c.droop_pu - x) / c.governor_time_s
        lim = c.governor_limit_pu
        if lim is not None and abs(x) >= lim and dx * x > 0:
            # At the limit the valve stops (no wind-up), so RK4's stages see it held.
            dx = 0.0
        dy = (x - y) / c.reheat_time_s if c.reheat_time_s else 0.0
        return (dw, dx, dy)

    def _integrate(self, span: float) -> None:
        # Plain floats, not arrays: three states make NumPy's per-call overhead dominate.
        n = max(1, math.ceil(span / self.config.max_step_s - 1e-9))
        h = span / n
        pb = self._fleet_pu()
        s = self._s
        for _ in range(n):
            k1 = self._deriv(s, pb)
            k2 = self._deriv(_axpy(s, 0.5 * h, k1), pb)
            k3 = self._deriv(_axpy(s, 0.5 * h, k2), pb)
            k4 = self._deriv(_axpy(s, h, k3), pb)
            w, x, y = (s[i] + (h / 6.0) * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) for i in range(3))
            s = (w, self._valve(x), y)
        self._s = s

    def _apply_due_events(self) -> None:
        while self._next < len(self._events) and self._events[self._next].time_s <= self.t:
            self._load_pu += self._events[self._next].delta_mw / self.config.base_mw
            self._next += 1


def _axpy(s: State, a: float, k: State) -> State:
    return (s[0] + a * k[0], s[1] + a * k[1], s[2] + a * k[2])


class GridFrequencySource:
    """The model as a PMU's frequency source (``PmuServer(source=...)``).

    :meth:`sample` advances the model to the requested time (seconds from the PMU's
    start) and returns (frequency with white measurement noise of ``noise_hz`` standard
    deviation, model ROCOF). Set the fleet's power on :attr:`fleet_kw` between frames.
    """

    def __init__(self, model: GridModel, noise_hz: float = 0.0, seed: int = 1) -> None:
        if not (math.isfinite(noise_hz) and noise_hz >= 0):
            raise config_error(f"noise must be >= 0 Hz, got {noise_hz}", "noise_hz")
        self.model = model
        self.noise_hz = noise_hz
        self._rng = np.random.default_rng(seed)

    @property
    def nominal(self) -> float:
        """Nominal frequency, Hz."""
        return self.model.config.nominal_hz

    @property
    def fleet_kw(self) -> float:
        """The fleet's injection into the model (kW, positive = discharge)."""
        return self.model.fleet_kw

    @fleet_kw.setter
    def fleet_kw(self, kw: float) -> None:
        self.model.fleet_kw = kw

    def sample(self, t: float) -> tuple[float, float]:
        """(frequency Hz, ROCOF Hz/s) at ``t`` s from the start."""
        f = self.model.advance_to(t)
        noise = float(self._rng.normal(0.0, self.noise_hz)) if self.noise_hz else 0.0
        return f + noise, self.model.rocof
