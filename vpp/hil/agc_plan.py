"""The plan models of the secondary reserve (AGC) procedure (docs/hil.md, "AGC").

An AGC case plays a sequence of set-points (:class:`AgcProfile`, the case's
``profile``) into the campus aggregator, as the load despatch centre does: the harness
sends the set-point in force every ``cycle_s``. The procedure's ``agc`` section
(:class:`AgcSettings`) says what the plant owes (the reserve it sold, each way), how
often a set-point comes, and what the campus under test is given (:class:`CampusSettings`:
its units, its ``campus.agc`` reserve and ramp, its dispatch interval); a case's ``agc``
section overrides any of them, e.g. to give the campus a ramp too slow for the limits.

Kept apart from :mod:`vpp.hil.plan` (which imports this module): the checks that need
the whole plan (:func:`check_agc_case`) take its models as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vpp.validation import config_error

if TYPE_CHECKING:
    from vpp.hil.plan import Case, Plan, Procedure

__all__ = [
    "AGC_DEFAULTS",
    "AGC_LIMITS",
    "AgcProfile",
    "AgcSettings",
    "CampusSettings",
    "ResolvedAgc",
    "SetPoint",
    "agc_limits",
    "check_agc_case",
    "resolve_agc",
]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

#: The criteria limits of an AGC procedure (:mod:`vpp.hil.agc_criteria`), beside
#: ``power_tolerance_pct``.
AGC_LIMITS = (
    "agc_start_s", "agc_full_s", "agc_start_fraction", "agc_tolerance_pct",
    "agc_max_rms_error_pct", "agc_max_error_pct",
)  # fmt: skip

#: The defaults of those limits: the regulation's where it gives them (CERC Ancillary
#: Services Regulations 2022, SRAS draft figures: start within 30 s, full within
#: 15 min), AgcConfig's otherwise (the 10 % start fraction and the 5 % tolerance, of the
#: larger reserve); the tracking errors are the project's choice (as ComplianceConfig's:
#: RMS 5 %, largest 10 %, here of the larger reserve).
AGC_DEFAULTS = {
    "agc_start_s": 30.0,
    "agc_full_s": 900.0,
    "agc_start_fraction": 0.1,
    "agc_tolerance_pct": 5.0,
    "agc_max_rms_error_pct": 5.0,
    "agc_max_error_pct": 10.0,
    "power_tolerance_pct": 5.0,
}

#: Most units a case's campus may have (each is a simulator and a Modbus poll in the
#: harness's process, paced in real time on a small machine).
MAX_UNITS = 4


class SetPoint(BaseModel):
    """From ``at_s`` (case time) on, the despatch centre asks for ``mw`` (+ = discharge)."""

    model_config = _STRICT
    at_s: float = Field(ge=0)
    mw: float


class AgcProfile(BaseModel):
    """AGC set-points over the case's time; the PMU holds ``hz`` throughout (nominal by
    default, so that the units' droop stays in its deadband and does not add to the
    response). Nothing is sent before the first set-point; from it on, the set-point
    in force is sent every ``cycle_s`` of the procedure, on a grid from case time 0 (a
    change between two sends goes with the next one)."""

    model_config = _STRICT
    kind: Literal["agc"]
    hz: float = Field(default=50.0, ge=45, le=65)
    setpoints: list[SetPoint] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _increasing(self) -> AgcProfile:
        times = [p.at_s for p in self.setpoints]
        for i in range(1, len(times)):
            if times[i] <= times[i - 1]:
                raise ValueError(
                    f"setpoints.{i}.at_s: {times[i]:g} s is not after the set-point "
                    f"before it ({times[i - 1]:g} s): times must increase"
                )
        return self

    @property
    def at_s(self) -> float:
        """When the first set-point is sent (the profile's start, as for the others)."""
        return self.setpoints[0].at_s

    def mw_at(self, t: float) -> float | None:
        """The set-point in force at case time ``t`` (None before the first)."""
        value = None
        for p in self.setpoints:
            if p.at_s > t + 1e-9:
                break
            value = p.mw
        return value


class CampusSettings(BaseModel):
    """The campus under test (every key optional: the procedure's, else the default)."""

    model_config = _STRICT
    units: int | None = Field(
        default=None, ge=1, le=MAX_UNITS,
        description="units of the plan's rating behind one field controller (default 2)",
    )  # fmt: skip
    reserved_up_mw: float | None = Field(
        default=None, ge=0, description="its campus.agc.reserved_up_mw (default: the obligation)"
    )
    reserved_down_mw: float | None = Field(
        default=None, ge=0, description="its campus.agc.reserved_down_mw (default: the obligation)"
    )
    ramp_mw_per_min: float | None = Field(
        default=None, gt=0, description="its campus.agc.ramp_mw_per_min (default 1)"
    )
    timeout_s: float | None = Field(
        default=None, gt=0, le=3600, description="its campus.agc.timeout_s (default 5 cycles)"
    )
    dispatch_interval_s: float | None = Field(
        default=None, gt=0, le=60, description="its campus.dispatch_interval_s (default 1)"
    )


class AgcSettings(BaseModel):
    """A procedure's (or a case's overrides of its) AGC section."""

    model_config = _STRICT
    cycle_s: float | None = Field(
        default=None, gt=0, le=60, description="the despatch centre's set-point period, s (4)"
    )
    reserve_up_mw: float | None = Field(
        default=None, ge=0, description="the obligation upward (more discharge), MW"
    )
    reserve_down_mw: float | None = Field(
        default=None, ge=0, description="the obligation downward (more charge), MW"
    )
    campus: CampusSettings = Field(default_factory=CampusSettings)


@dataclass(frozen=True)
class ResolvedAgc:
    """A case's AGC settings: the case's over the procedure's over the defaults."""

    cycle_s: float
    reserve_up_mw: float
    reserve_down_mw: float
    units: int
    campus_up_mw: float
    campus_down_mw: float
    ramp_mw_per_min: float
    timeout_s: float
    dispatch_interval_s: float


def _pick(*values: float | int | None, default: float) -> float:
    return next((float(v) for v in values if v is not None), default)


def resolve_agc(proc: Procedure, case: Case) -> ResolvedAgc:
    """The AGC settings of ``case``: its ``agc`` over its procedure's over the defaults
    (NLDC's 4 s cycle; the CERC minimum of 1 MW each way; two units; a campus given the
    obligation, AgcConfig's 1 MW/min ramp, a timeout of 5 cycles, 1 s rounds)."""
    p = proc.agc or AgcSettings()
    c = case.agc or AgcSettings()
    cycle = _pick(c.cycle_s, p.cycle_s, default=4.0)
    up = _pick(c.reserve_up_mw, p.reserve_up_mw, default=1.0)
    down = _pick(c.reserve_down_mw, p.reserve_down_mw, default=1.0)
    pc, cc = p.campus, c.campus
    return ResolvedAgc(
        cycle_s=cycle,
        reserve_up_mw=up,
        reserve_down_mw=down,
        units=int(_pick(cc.units, pc.units, default=2)),
        campus_up_mw=_pick(cc.reserved_up_mw, pc.reserved_up_mw, default=up),
        campus_down_mw=_pick(cc.reserved_down_mw, pc.reserved_down_mw, default=down),
        ramp_mw_per_min=_pick(cc.ramp_mw_per_min, pc.ramp_mw_per_min, default=1.0),
        timeout_s=_pick(cc.timeout_s, pc.timeout_s, default=5 * cycle),
        dispatch_interval_s=_pick(cc.dispatch_interval_s, pc.dispatch_interval_s, default=1.0),
    )


def agc_limits(proc: Procedure, case: Case) -> dict[str, float]:
    """The AGC criteria limits: the defaults, the procedure's, the case's on top."""
    return AGC_DEFAULTS | proc.criteria | case.criteria


def check_agc_case(path: Path, i: int, plan: Plan, case: Case, proc: Procedure) -> None:
    """An AGC case is whole: the profile goes with the procedure, the target is the
    simulated one (the campus in the loop), and every set-point lies within the case and
    within the campus's rating (the campus refuses more). One-line ConfigError naming
    the field otherwise."""
    field = f"plan {path}: field 'cases.{i}"
    is_agc = isinstance(case.profile, AgcProfile)
    if (proc.kind == "agc") != is_agc:
        why = ("an AGC procedure plays a profile of kind 'agc' (set-points)" if not is_agc
               else "a profile of kind 'agc' goes with a procedure of kind 'agc'")  # fmt: skip
        raise config_error(f"{field}.profile': {why}", "profile")
    if case.agc is not None and proc.kind != "agc":
        raise config_error(f"{field}.agc': an 'agc' section goes with a procedure of "
                           "kind 'agc'", "agc")  # fmt: skip
    if not isinstance(case.profile, AgcProfile):
        return
    if plan.target != "simulated":
        raise config_error(
            f"{field}.procedure': case {case.name}: an AGC case needs the campus in the loop, "
            f"which only the simulated target has (target {plan.target!r})",
            "procedure",
        )
    agc = resolve_agc(proc, case)
    lim = agc_limits(proc, case)
    # The limits as the product's SRAS settings take them (e.g. a start fraction below 1).
    from vpp.orchestrator.grid.agc import AgcConfig

    for key, opt in (("agc_start_s", "start_s"), ("agc_full_s", "full_s"),
                     ("agc_start_fraction", "start_fraction"),
                     ("agc_tolerance_pct", "tolerance_pct")):  # fmt: skip
        try:
            AgcConfig.model_validate({opt: lim[key]})
        except ValidationError as exc:
            why = exc.errors()[0]["msg"]
            raise config_error(f"{field}.criteria.{key}': {why}", key) from exc
    rating_mw = agc.units * plan.unit.rated_kw / 1000.0
    for j, sp in enumerate(case.profile.setpoints):
        where = f"{field}.profile.setpoints.{j}"
        if sp.at_s >= case.duration_s:
            raise config_error(
                f"{where}.at_s': the set-point at {sp.at_s:g} s is not within the case's "
                f"duration_s {case.duration_s:g} s",
                "at_s",
            )
        if abs(sp.mw) > rating_mw + 1e-9:
            raise config_error(
                f"{where}.mw': {sp.mw:g} MW is beyond the campus's rating +-{rating_mw:g} MW "
                f"({agc.units} units of {plan.unit.rated_kw:g} kW)",
                "mw",
            )
