"""Compliance of a unit's (or the fleet's) measured response with its droop characteristic.

For one event and one power trace (times, the frequency the unit saw, its power):

- baseline: the mean power over ``baseline_s`` before the event start (the first
  sample when there is none before); response = power - baseline;
- expected response: ``clip(baseline + droop(f), -max_charge, max_discharge) - baseline``
  with the droop of :class:`DroopCharacteristic` (the core DroopController's formula:
  the straight droop, or the two segments of a knee);
- start delay: when the measured response first reaches ``start_fraction`` of the
  peak expected response (in its direction), minus when the expected response did;
- full-response delay: the same with ``full_fraction``;
- accuracy: measured minus expected from ``accuracy_delay_s`` after the start to the
  event end, as RMS and maximum in % of the rating, and the relative RMS error
  rms(measured - expected) / rms(expected) in %; ``gain_ratio`` is the least-squares
  ratio measured / expected (1 for a faithful response, 0.5 for one at half gain).

An event whose peak expected response stays below ``min_expected_pct`` of the rating
(the frequency hardly left the deadband) passes every criterion as not applicable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.config.field import DroopSettings, check_knee
from vpp.orchestrator.grid.config import ComplianceConfig
from vpp.orchestrator.grid.events import FrequencyEvent
from vpp.orchestrator.grid.verdict import fleet_verdict
from vpp.validation import config_error

__all__ = [
    "ComplianceConfig",
    "ComplianceResult",
    "Criterion",
    "DroopCharacteristic",
    "FleetCompliance",
    "check_fleet",
    "check_unit",
    "fleet_verdict",
]

FloatArray = NDArray[np.float64]


class DroopCharacteristic(BaseModel):
    """The configured response of one unit (defaults: droop 5 %, IEGC band 49.90-50.05,
    no knee; with ``knee_hz > 0`` the knee's two segments replace the droop)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rated_kw: float = Field(gt=0, description="p_max_kw of the droop, kW")
    droop_percent: float = Field(default=5.0, gt=0, le=100)
    nominal_hz: float = Field(default=50.0, gt=0)
    deadband_low_hz: float = Field(default=49.90, gt=0)
    deadband_high_hz: float = Field(default=50.05, gt=0)
    knee_hz: float = Field(default=0.0, ge=0, description="0: no knee")
    knee_percent: float = Field(default=0.0, ge=0, lt=100)
    full_hz: float = Field(default=0.0, ge=0)
    max_discharge_kw: float | None = Field(default=None, ge=0, description="None: rated")
    max_charge_kw: float | None = Field(default=None, ge=0, description="None: rated")

    @model_validator(mode="after")
    def _band(self) -> DroopCharacteristic:
        if self.deadband_low_hz > self.deadband_high_hz:
            raise ValueError("deadband_low_hz must be <= deadband_high_hz")
        check_knee(self.nominal_hz, self.deadband_low_hz, self.deadband_high_hz,
                   self.knee_hz, self.knee_percent, self.full_hz)  # fmt: skip
        return self

    @classmethod
    def of_settings(
        cls, d: DroopSettings, *, rated_kw: float, nominal_hz: float, **limits: float
    ) -> DroopCharacteristic:
        """The characteristic of a unit's configured droop settings (``limits``:
        ``max_discharge_kw``, ``max_charge_kw``)."""
        return cls(
            rated_kw=rated_kw, nominal_hz=nominal_hz, droop_percent=d.droop_percent,
            deadband_low_hz=d.deadband_low_hz, deadband_high_hz=d.deadband_high_hz,
            knee_hz=d.knee_hz, knee_percent=d.knee_percent, full_hz=d.full_hz, **limits,
        )  # fmt: skip

    def droop_kw(self, f: ArrayLike) -> FloatArray:
        """Unlimited droop response (kW) at frequencies ``f``: zero in the deadband,
        ``-(rated / R) (f - edge) / nominal`` beyond it; with a knee, the fraction of
        ``rated_kw`` on its two segments (deviations from nominal), signed as the droop."""
        fs = np.asarray(f, dtype=np.float64)
        if self.knee_hz > 0:
            knee, k, full = self.knee_percent / 100.0, self.knee_hz, self.full_hz

            def fraction(x: FloatArray, edge: float) -> FloatArray:
                inner = knee * ((x - edge) / (k - edge))  # as the core: <= knee at the knee
                outer = knee + (1.0 - knee) * (x - k) / (full - k)
                return np.asarray(np.where(x <= k, inner, outer), dtype=np.float64)

            nom = self.nominal_hz
            low = fraction(nom - fs, nom - self.deadband_low_hz)
            high = fraction(fs - nom, self.deadband_high_hz - nom)
            out = np.where(fs < self.deadband_low_hz, low,
                           np.where(fs > self.deadband_high_hz, -high, 0.0))  # fmt: skip
            return np.asarray(self.rated_kw * out, dtype=np.float64)
        slope = self.rated_kw / (self.droop_percent / 100.0) / self.nominal_hz
        below = np.minimum(fs - self.deadband_low_hz, 0.0)
        above = np.maximum(fs - self.deadband_high_hz, 0.0)
        return np.asarray(-slope * (below + above), dtype=np.float64)

    def expected_kw(self, f: ArrayLike, base_kw: float = 0.0) -> FloatArray:
        """Expected response (kW, change from ``base_kw``) with the power limits."""
        hi = self.rated_kw if self.max_discharge_kw is None else self.max_discharge_kw
        lo = -(self.rated_kw if self.max_charge_kw is None else self.max_charge_kw)
        total = np.clip(base_kw + self.droop_kw(f), lo, hi)
        return np.asarray(total - base_kw, dtype=np.float64)


@dataclass(frozen=True)
class Criterion:
    """One criterion: measured ``value`` against ``limit`` (None: not applicable)."""

    name: str
    passed: bool
    value: float | None
    limit: float
    reason: str


@dataclass(frozen=True)
class ComplianceResult:
    """The verdict for one unit (or the fleet) and one event, with the figures behind it."""

    unit_id: str
    event_start: float
    criteria: list[Criterion]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every criterion passed."""
        return all(c.passed for c in self.criteria)

    @property
    def failures(self) -> list[str]:
        """The reasons of the failed criteria."""
        return [c.reason for c in self.criteria if not c.passed]

    def criterion(self, name: str) -> Criterion:
        """The criterion called ``name``."""
        return next(c for c in self.criteria if c.name == name)


def _trace(t: ArrayLike, f: ArrayLike, p: ArrayLike, who: str) -> tuple[FloatArray, ...]:
    ts, fs, ps = (np.asarray(x, dtype=np.float64) for x in (t, f, p))
    if not (ts.ndim == 1 and ts.shape == fs.shape == ps.shape and ts.size >= 2):
        raise config_error(f"{who}: t, f and p_kw need one equal length >= 2", "p_kw")
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
        raise config_error(f"{who}: times must be finite and increasing", "t")
    if not (np.all(np.isfinite(fs)) and np.all(np.isfinite(ps))):
        raise config_error(f"{who}: non-finite frequency or power", "p_kw")
    return ts, fs, ps


def _baseline(t: FloatArray, p: FloatArray, start: float, span: float) -> float:
    before = (t < start) & (t >= start - span)
    return float(p[before].mean()) if before.any() else float(p[0])


def _first(t: FloatArray, mask: NDArray[np.bool_]) -> float | None:
    idx = np.flatnonzero(mask)
    return float(t[idx[0]]) if idx.size else None


def _assess(
    who: str,
    event: FrequencyEvent,
    t: FloatArray,
    expected: FloatArray,
    measured: FloatArray,
    rating_kw: float,
    cfg: ComplianceConfig,
) -> ComplianceResult:
    """Criteria from the expected and measured response (kW, from baseline) in the event."""
    end = event.end if event.end is not None else float(t[-1])
    win = (t >= event.start) & (t <= end)
    tw, ew, mw = t[win], expected[win], measured[win]
    peak_idx = int(np.argmax(np.abs(ew))) if tw.size else 0
    peak = float(ew[peak_idx]) if tw.size else 0.0
    metrics = {"peak_expected_kw": peak, "rating_kw": rating_kw}
    if abs(peak) < cfg.min_expected_pct / 100.0 * rating_kw:
        why = f"n/a: peak expected {peak:.3g} kW below {cfg.min_expected_pct}% of rating"
        names = ("start_delay", "full_delay", "rms_error", "max_error", "rel_rms_error")
        return ComplianceResult(who, event.start, [Criterion(n, True, None, 0, why) for n in names])
    sign = math.copysign(1.0, peak)
    se, sm = sign * ew, sign * mw
    metrics["peak_measured_kw"] = float(sign * sm.max())
    crits: list[Criterion] = []
    for name, frac, limit in (
        ("start_delay", cfg.start_fraction, cfg.max_start_delay_s),
        ("full_delay", cfg.full_fraction, cfg.max_full_delay_s),
    ):
        level = frac * abs(peak)
        t_exp = _first(tw, se >= level)
        t_meas = _first(tw, sm >= level)
        assert t_exp is not None  # the peak itself reaches every fraction <= 1
        if t_meas is None:
            crits.append(
                Criterion(name, False, None, limit, f"{name}: never reached {level:.3g} kW")
            )
            continue
        delay = t_meas - t_exp
        metrics[f"{name}_s"] = delay
        # Also from the event start, which a ROCOF-triggered event puts before the
        # frequency leaves the deadband (so before any response is due).
        metrics[f"{name}_after_event_s"] = t_meas - event.start
        ok = delay <= limit
        verdict = "within" if ok else "over"
        crits.append(
            Criterion(name, ok, delay, limit, f"{name}: {delay:.3f} s {verdict} {limit} s")
        )
    acc = tw >= event.start + cfg.accuracy_delay_s
    err = (mw - ew)[acc]
    if err.size == 0:
        acc, err = np.ones_like(tw, dtype=bool), mw - ew
    rms = float(np.sqrt(np.mean(err**2)))
    metrics["rms_error_pct"] = 100.0 * rms / rating_kw
    metrics["max_error_pct"] = 100.0 * float(np.max(np.abs(err))) / rating_kw
    denom = float(np.dot(ew[acc], ew[acc]))
    rms_exp = math.sqrt(denom / err.size)
    # No response due in the window (a short event): relative to the peak instead.
    metrics["rel_rms_error_pct"] = 100.0 * rms / (rms_exp or abs(peak))
    # No expected response in the window: measured / expected has no value, and is left
    # out (as a delay never reached is) rather than NaN, which the bus refuses.
    if denom:
        metrics["gain_ratio"] = float(np.dot(mw[acc], ew[acc])) / denom
    for name, key, limit, unit in (
        ("rms_error", "rms_error_pct", cfg.max_rms_error_pct, "% of rating"),
        ("max_error", "max_error_pct", cfg.max_abs_error_pct, "% of rating"),
        ("rel_rms_error", "rel_rms_error_pct", cfg.max_rel_rms_error_pct, "% of expected"),
    ):
        value = metrics[key]
        ok = value <= limit
        verdict = "within" if ok else "over"
        reason = f"{name}: {value:.2f} {unit} {verdict} {limit}"
        crits.append(Criterion(name, ok, value, limit, reason))
    return ComplianceResult(who, event.start, crits, metrics)


def check_unit(
    unit_id: str,
    event: FrequencyEvent,
    t: ArrayLike,
    f: ArrayLike,
    p_kw: ArrayLike,
    characteristic: DroopCharacteristic,
    config: ComplianceConfig | None = None,
) -> ComplianceResult:
    """Compliance of one unit's power ``p_kw`` with ``characteristic`` over ``event``."""
    cfg = config if config is not None else ComplianceConfig()
    ts, fs, ps = _trace(t, f, p_kw, unit_id)
    base = _baseline(ts, ps, event.start, cfg.baseline_s)
    expected = characteristic.expected_kw(fs, base)
    return _assess(unit_id, event, ts, expected, ps - base, characteristic.rated_kw, cfg)


@dataclass(frozen=True)
class FleetCompliance:
    """The fleet's verdict (sums of the units) and each unit's."""

    fleet: ComplianceResult
    units: dict[str, ComplianceResult]


def check_fleet(
    event: FrequencyEvent,
    t: ArrayLike,
    f: ArrayLike,
    powers: Mapping[str, ArrayLike],
    characteristics: Mapping[str, DroopCharacteristic],
    config: ComplianceConfig | None = None,
) -> FleetCompliance:
    """Per unit and for the whole fleet (summed expected and measured response against
    the summed ratings); all traces share the times ``t`` and frequency ``f``."""
    cfg = config if config is not None else ComplianceConfig()
    missing = set(powers) ^ set(characteristics)
    if missing or not powers:
        why = f"powers and characteristics must name the same units: {sorted(missing)}"
        raise config_error(why, "powers")
    units: dict[str, ComplianceResult] = {}
    ts = np.asarray(t, dtype=np.float64)
    exp_sum = np.zeros_like(ts)
    meas_sum = np.zeros_like(ts)
    rating = 0.0
    for uid, p in powers.items():
        ch = characteristics[uid]
        units[uid] = check_unit(uid, event, t, f, p, ch, cfg)
        ts, fs, ps = _trace(t, f, p, uid)
        base = _baseline(ts, ps, event.start, cfg.baseline_s)
        exp_sum += ch.expected_kw(fs, base)
        meas_sum += ps - base
        rating += ch.rated_kw
    fleet = _assess("fleet", event, ts, exp_sum, meas_sum, rating, cfg)
    return FleetCompliance(fleet, units)
