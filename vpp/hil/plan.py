"""The test plan and the procedures it refers to (docs/hil.md, "Plan format").

A plan (YAML) names a ``target`` and its ``cases``. A case names a procedure (a built-in
of ``vpp/hil/procedures`` or a YAML file of the same form), a frequency profile, its
duration, the starting conditions of the unit, and overrides: of the unit's droop
settings (the tuning under test) and of the procedure's criteria limits.

Every model is strict (no unknown keys, no strings for numbers); a bad plan is a
:class:`~vpp.errors.ConfigError` whose message names the file and the field as a dotted
path (``cases.1.profile.to_hz``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.config.field import check_knee
from vpp.errors import ConfigError
from vpp.hil.agc_plan import AGC_LIMITS, AgcProfile, AgcSettings, check_agc_case
from vpp.validation import config_error, validate_model

if TYPE_CHECKING:
    from vpp.drivers.register_map import RegisterMap

__all__ = [
    "BUILTIN_PROCEDURES",
    "SUNSPEC_POWER_MODELS",
    "SUNSPEC_SOC_MODELS",
    "AgcProfile",
    "AgcSettings",
    "Case",
    "CellOverVoltageTrip",
    "CharacteristicSpec",
    "ComtradeProfile",
    "CsvProfile",
    "DeviceSpec",
    "MeterSpec",
    "OscillationProfile",
    "OverTemperatureTrip",
    "PdcSpec",
    "Plan",
    "Procedure",
    "RampProfile",
    "StartConditions",
    "StepProfile",
    "Trip",
    "UnitSettings",
    "UnitSpec",
    "case_trip",
    "load_plan",
    "load_procedure",
    "meter_map",
]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

#: The procedures shipped in ``vpp/hil/procedures`` (name -> file).
BUILTIN_PROCEDURES = (
    "iegc_primary", "fcr_ce", "gb_dc", "soc_limit", "rocof_ride_through", "safety_trip",
    "sras_agc",
)  # fmt: skip

#: Criteria limits that are not ComplianceConfig's (see :mod:`vpp.hil.criteria` and
#: :mod:`vpp.hil.safety_criteria`).
ENVELOPE_LIMITS = (
    "power_tolerance_pct", "max_discharge_pct",
    # rocof_ride_through
    "min_rocof_hz_s", "rocof_window_s", "max_safety_frames", "max_unused_frames",
    # safety_trip
    "min_response_pct", "max_trip_setpoint_delay_s", "max_trip_power_delay_s",
    "trip_tolerance_pct",
)  # fmt: skip


class StepProfile(BaseModel):
    """``from_hz`` until ``at_s``, then ``to_hz``."""

    model_config = _STRICT
    kind: Literal["step"]
    from_hz: float = Field(default=50.0, ge=45, le=65)
    to_hz: float = Field(ge=45, le=65)
    at_s: float = Field(default=2.0, ge=0)


class RampProfile(BaseModel):
    """``from_hz`` until ``at_s``, then ``rate_hz_s`` for ``ramp_s`` seconds, then held."""

    model_config = _STRICT
    kind: Literal["ramp"]
    from_hz: float = Field(default=50.0, ge=45, le=65)
    rate_hz_s: float = Field(ge=-10, le=10)
    ramp_s: float = Field(gt=0)
    at_s: float = Field(default=2.0, ge=0)


class OscillationProfile(BaseModel):
    """``center_hz + amplitude_hz * sin(2 pi (t - at_s) / period_s)`` from ``at_s``."""

    model_config = _STRICT
    kind: Literal["oscillation"]
    center_hz: float = Field(default=50.0, ge=45, le=65)
    amplitude_hz: float = Field(gt=0, le=5)
    period_s: float = Field(gt=0)
    at_s: float = Field(default=2.0, ge=0)


class CsvProfile(BaseModel):
    """A recording of ``time_s,freq_hz`` rows (relative to the plan's directory), played
    from ``at_s`` (its first value held before, its last after)."""

    model_config = _STRICT
    kind: Literal["csv"]
    file: str = Field(min_length=1)
    at_s: float = Field(default=0.0, ge=0)


class ComtradeProfile(BaseModel):
    """The analog ``channel`` (its ch_id) of a COMTRADE record (the ``.cfg``, relative to
    the plan's directory; the ``.dat`` beside it), in Hz, played like a CSV recording."""

    model_config = _STRICT
    kind: Literal["comtrade"]
    file: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    at_s: float = Field(default=0.0, ge=0)


Profile = Annotated[
    StepProfile | RampProfile | OscillationProfile | CsvProfile | ComtradeProfile | AgcProfile,
    Field(discriminator="kind"),
]


class CellOverVoltageTrip(BaseModel):
    """From ``at_s`` (case time) to the end of the case the simulated BESS reports its DC
    voltage as ``cell_v`` per cell: the envelope's cell (and pack) over-voltage trips.
    The simulated inverter does not stop by itself: only the controller's trip stops it."""

    model_config = _STRICT
    kind: Literal["cell_over_voltage"]
    at_s: float = Field(ge=0)
    cell_v: float = Field(default=3.75, gt=0, le=10, description="V per cell")


class OverTemperatureTrip(BaseModel):
    """From ``at_s`` (case time) to the end of the case the simulated battery is at
    ``temperature_c`` (and so is its ambient, so that it stays there): the envelope's
    temperature rise and discharge temperature limits (and, at or above 70 C, its critical
    temperature); the simulated inverter also faults above 60 C, as a real one would."""

    model_config = _STRICT
    kind: Literal["over_temperature"]
    at_s: float = Field(ge=0)
    temperature_c: float = Field(default=65.0, ge=-40, le=200)


Trip = Annotated[CellOverVoltageTrip | OverTemperatureTrip, Field(discriminator="kind")]


class StartConditions(BaseModel):
    """The unit when the case starts."""

    model_config = _STRICT
    soc_pct: float = Field(default=50.0, ge=0, le=100)
    temperature_c: float = Field(default=25.0, ge=-40, le=80)
    base_kw: float = 0.0
    participation_kw: float | None = Field(
        default=None, ge=0, description="the droop's full response, kW (None: the rating)"
    )


class UnitSettings(BaseModel):
    """The controller's settings for the unit (all optional: a procedure gives them, a
    case overrides some to test a mis-tuned controller)."""

    model_config = _STRICT
    droop_percent: float | None = Field(default=None, gt=0, le=20)
    deadband_low_hz: float | None = None
    deadband_high_hz: float | None = None
    knee_hz: float | None = Field(
        default=None, ge=0, description="the knee's deviation from nominal, Hz (0: none)"
    )
    knee_percent: float | None = Field(
        default=None, ge=0, lt=100, description="the response at the knee, % of the share"
    )
    full_hz: float | None = Field(
        default=None, ge=0, description="with a knee, the deviation at 100 %, Hz"
    )
    ramp_pu_per_s: float | None = Field(
        default=None, gt=0, description="the safety envelope's ramp limit, rating per second"
    )
    max_deviation_hz: float | None = Field(
        default=None,
        gt=0,
        le=20,
        description="the controller takes a frequency further than this from nominal as a "
        "bad measurement (its PMU admission rule; default 5 Hz)",
    )


class UnitSpec(BaseModel):
    """The simulated unit: its rating and capacity."""

    model_config = _STRICT
    rated_kw: float = Field(default=500.0, gt=0)
    capacity_kwh: float = Field(default=1000.0, gt=0)


class PdcSpec(BaseModel):
    """Where the harness serves its C37.118 stream to the device, as a PMU would.

    ``transport: tcp``: the device connects to ``host:port`` as the PDC and turns data
    on; the data frames go over that connection. ``transport: udp`` (a PMU configured
    for UDP spontaneous data): every data frame goes to the device at
    ``udp_host:udp_port`` from the moment the PMU starts, and ``host:port`` still
    answers commands over TCP (a device fetches the configuration there). With
    ``await_command`` the case's settle starts when the device has sent its first
    command over TCP (the sign that it is there); without, at once.
    """

    model_config = _STRICT
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(
        ge=1,
        le=65535,
        description="the TCP port the device connects to (commands, and with tcp the data)",
    )
    idcode: int = Field(default=7734, ge=1, le=65534)
    connect_timeout_s: float = Field(
        default=30.0, gt=0, le=600,
        description="how long to wait for data on (tcp) or the first command (udp)",
    )  # fmt: skip
    transport: Literal["tcp", "udp"] = "tcp"
    udp_host: str | None = Field(
        default=None, min_length=1, description="udp: the device's address for the data"
    )
    udp_port: int | None = Field(
        default=None, ge=1, le=65535, description="udp: the device's port for the data"
    )
    await_command: bool = Field(
        default=True,
        description="udp: start the settle on the device's first TCP command (false: "
        "at once, for a device that never asks)",
    )


#: SunSpec models the harness reads the device's power from (the point, in W, positive
#: for generation: a BESS's discharge, vpp's sign).
SUNSPEC_POWER_MODELS = {701: "W"}
#: SunSpec models the harness reads the device's SOC from (the point, in %).
SUNSPEC_SOC_MODELS = {713: "SoC", 802: "SoC"}
_MODBUS_KEYS = ("register_map", "power_point", "soc_point")
_SUNSPEC_KEYS = ("power_model", "soc_model")


class MeterSpec(BaseModel):
    """How the harness reads the device's response over Modbus TCP.

    ``protocol: modbus``: points of a register map
    (:func:`vpp.drivers.register_map.load_register_map`: a file, or a map shipped in
    ``vpp/drivers/maps``), decoded with the map's scale and sign (vpp's convention:
    positive = discharge). ``protocol: sunspec``: the device's SunSpec models, found
    by discovery (the ``SunS`` marker, the model chain) as the field's SunSpec driver
    finds them: the power from ``power_model`` (701 ``W``), the SOC from ``soc_model``
    (713 or 802 ``SoC``), each with its model's scale factor.
    """

    model_config = _STRICT
    protocol: Literal["modbus", "sunspec"] = "modbus"
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=255)
    register_map: str = Field(default="bess_default.yaml", min_length=1)
    power_point: str = Field(default="active_power", min_length=1)
    soc_point: str | None = Field(
        default="soc", description="None: the device reports no SOC (SOC checks not judged)"
    )
    power_model: int = Field(default=701, description="sunspec: the model of the power")
    soc_model: int | None = Field(
        default=713, description="sunspec: the model of the SOC (None: not read)"
    )
    poll_s: float = Field(default=0.1, ge=0.02, le=5)
    timeout_s: float = Field(default=0.5, gt=0, le=10)

    @property
    def reads_soc(self) -> bool:
        """Whether the meter reads the device's SOC."""
        if self.protocol == "sunspec":
            return self.soc_model is not None
        return self.soc_point is not None


class DeviceStartTolerance(BaseModel):
    """How far the device may be from a case's stated starting conditions."""

    model_config = _STRICT
    soc_pct: float = Field(default=2.0, ge=0)
    base_pct: float = Field(default=2.0, ge=0, description="% of the rating")


class DeviceSpec(BaseModel):
    """A unit under test reached only through its protocols (``target: device``)."""

    model_config = _STRICT
    pmu: PdcSpec
    meter: MeterSpec
    start_tolerance: DeviceStartTolerance = Field(default_factory=DeviceStartTolerance)


class CharacteristicSpec(BaseModel):
    """The response a procedure expects (the droop of
    :class:`~vpp.orchestrator.grid.compliance.DroopCharacteristic`): a straight droop
    (``droop_percent``) or a knee (``knee_hz``, ``knee_percent``, ``full_hz``: the
    service's points, deviations from nominal), one or the other."""

    model_config = _STRICT
    droop_percent: float | None = Field(default=None, gt=0, le=100)
    deadband_low_hz: float = Field(gt=0)
    deadband_high_hz: float = Field(gt=0)
    nominal_hz: float = Field(default=50.0, gt=0)
    knee_hz: float = Field(default=0.0, ge=0, description="0: no knee")
    knee_percent: float = Field(default=0.0, ge=0, lt=100)
    full_hz: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _droop_or_knee(self) -> CharacteristicSpec:
        knee = self.knee_hz > 0
        if knee == (self.droop_percent is not None):
            # Both would leave the reader to guess which one the criteria judge against.
            raise ValueError("give droop_percent or a knee (knee_hz > 0), one of the two")
        check_knee(self.nominal_hz, self.deadband_low_hz, self.deadband_high_hz,
                   self.knee_hz, self.knee_percent, self.full_hz)  # fmt: skip
        return self


class Procedure(BaseModel):
    """A test procedure: what it expects, which settings it asks of the controller, and
    the limits of its criteria."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    title: str = Field(min_length=1)
    source: str = Field(min_length=1, description="where the figures come from")
    kind: Literal["droop", "soc_limit", "rocof_ride_through", "safety_trip", "agc"]
    characteristic: CharacteristicSpec
    unit: UnitSettings = Field(default_factory=UnitSettings)
    criteria: dict[str, float] = Field(default_factory=dict)
    trip: Trip | None = Field(
        default=None, description="the trip a safety_trip procedure injects (a case may replace it)"
    )
    agc: AgcSettings | None = Field(
        default=None, description="an agc procedure's obligation, cycle and campus"
    )

    @model_validator(mode="after")
    def _trip_kind(self) -> Procedure:
        if self.trip is not None and self.kind != "safety_trip":
            raise ValueError("a 'trip' goes with a procedure of kind 'safety_trip'")
        return self

    @model_validator(mode="after")
    def _agc_kind(self) -> Procedure:
        if (self.agc is not None) != (self.kind == "agc"):
            raise ValueError("a procedure of kind 'agc' needs an 'agc' section; no other has one")
        return self


class Case(BaseModel):
    """One case of a plan."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    procedure: str = Field(min_length=1, description="a built-in name or a YAML file")
    profile: Profile
    duration_s: float = Field(gt=0, le=600)
    start: StartConditions = Field(default_factory=StartConditions)
    unit: UnitSettings = Field(default_factory=UnitSettings)
    criteria: dict[str, float] = Field(default_factory=dict)
    trip: Trip | None = Field(
        default=None, description="a safety trip injected into the simulated plant"
    )
    agc: AgcSettings | None = Field(
        default=None, description="overrides of an agc procedure's obligation, cycle and campus"
    )

    @model_validator(mode="after")
    def _trip_in_case(self) -> Case:
        if self.trip is not None and self.trip.at_s >= self.duration_s:
            raise ValueError(
                f"the trip at {self.trip.at_s:g} s is not within the case's "
                f"duration_s {self.duration_s:g} s"
            )
        return self


class Plan(BaseModel):
    """A test plan: its target and cases."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    target: Literal["simulated", "device"] = "simulated"
    unit: UnitSpec = Field(default_factory=UnitSpec)
    rate: Literal[10, 25, 50] = 50
    settle_s: float = Field(
        default=3.0, ge=1, le=30, description="seconds at the first frequency before t = 0"
    )
    device: DeviceSpec | None = None
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Plan:
        names = [c.name for c in self.cases]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"case names repeat: {dup}")
        if (self.target == "device") != (self.device is not None):
            raise ValueError("a 'device' section goes with target 'device', and only with it")
        tripped = [c.name for c in self.cases if c.trip is not None]
        if self.target == "device" and tripped:
            raise ValueError(_NO_DEVICE_TRIP.format(tripped[0]))
        return self


#: A device's plant is out of the harness's reach (see :class:`Plan`, :func:`load_plan`).
_NO_DEVICE_TRIP = (
    "case {}: a trip cannot be injected into a device (target 'device'): only the "
    "simulated target's plant can be made to trip"
)


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise config_error(f"{what} {path}: cannot read ({exc.strerror or exc})", what) from exc
    except yaml.YAMLError as exc:
        # The parser's message spans lines; its first line says what and where.
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise config_error(f"{what} {path}: not YAML: {first}", what) from exc
    if not isinstance(data, dict):
        raise config_error(f"{what} {path}: expected a mapping at the top", what)
    return data


def meter_map(meter: MeterSpec, base: Path) -> RegisterMap:
    """The meter's register map: a file relative to the plan's directory, else a map
    shipped in ``vpp/drivers/maps``."""
    from vpp.drivers.register_map import load_register_map

    local = base / meter.register_map
    return load_register_map(local if local.is_file() else meter.register_map)


def _check_pdc(path: Path, pmu: PdcSpec) -> None:
    """The UDP keys go with ``transport: udp``, and only with it."""
    given = pmu.model_fields_set
    if pmu.transport == "udp":
        for key in ("udp_host", "udp_port"):
            if getattr(pmu, key) is None:
                raise config_error(
                    f"plan {path}: field 'device.pmu.{key}': transport udp needs the "
                    "device's address for the data frames (udp_host and udp_port)",
                    key,
                )
        return
    for key in ("udp_host", "udp_port", "await_command"):
        if key in given:
            raise config_error(
                f"plan {path}: field 'device.pmu.{key}': only with transport udp "
                "(with tcp the data go over the device's connection)",
                key,
            )


def _check_meter(path: Path, meter: MeterSpec) -> None:
    """The meter's keys fit its protocol, and its points or models exist."""
    given = meter.model_fields_set
    if meter.protocol == "sunspec":
        for key in _MODBUS_KEYS:
            if key in given:
                raise config_error(
                    f"plan {path}: field 'device.meter.{key}': not with protocol sunspec "
                    "(its points come from the device's SunSpec models: power_model, "
                    "soc_model)",
                    key,
                )
        if not 1 <= meter.device_id <= 247:
            raise config_error(
                f"plan {path}: field 'device.meter.device_id': a SunSpec device's unit id "
                f"is 1-247, not {meter.device_id}",
                "device_id",
            )
        for key, models in (("power_model", SUNSPEC_POWER_MODELS),
                            ("soc_model", SUNSPEC_SOC_MODELS)):  # fmt: skip
            model = getattr(meter, key)
            if model is not None and model not in models:
                known = ", ".join(f"{m} ({p})" for m, p in models.items())
                raise config_error(
                    f"plan {path}: field 'device.meter.{key}': the harness reads no "
                    f"SunSpec model {model}; known: {known}",
                    key,
                )
        return
    for key in _SUNSPEC_KEYS:
        if key in given:
            raise config_error(
                f"plan {path}: field 'device.meter.{key}': only with protocol sunspec "
                "(a Modbus meter reads the points of its register_map)",
                key,
            )
    try:
        regmap = meter_map(meter, path.parent)
    except ConfigError as exc:
        raise config_error(
            f"plan {path}: field 'device.meter.register_map': {exc}", "register_map"
        ) from exc
    names = {p.name for p in regmap.points}
    for key in ("power_point", "soc_point"):
        name = getattr(meter, key)
        if name is not None and name not in names:
            raise config_error(
                f"plan {path}: field 'device.meter.{key}': no point {name!r} in "
                f"{meter.register_map}",
                key,
            )


def _check_device(path: Path, plan: Plan, dev: DeviceSpec) -> None:
    """A device plan: its PMU's transport keys agree, its meter's points or models
    exist, and no case asks for what a device cannot be given (its settings are its
    own; its state is what it is: only checked)."""
    _check_pdc(path, dev.pmu)
    _check_meter(path, dev.meter)
    for i, case in enumerate(plan.cases):
        if case.unit.model_fields_set:
            raise config_error(
                f"plan {path}: field 'cases.{i}.unit': a device's settings are its own; "
                "the harness cannot set them (configure the device instead)",
                "unit",
            )
        given = case.start.model_fields_set
        if "temperature_c" in given:
            raise config_error(
                f"plan {path}: field 'cases.{i}.start.temperature_c': a device's "
                "temperature can be neither set nor read by the harness",
                "start",
            )
        if "soc_pct" in given and not dev.meter.reads_soc:
            raise config_error(
                f"plan {path}: field 'cases.{i}.start.soc_pct': the meter has no soc_point "
                "(sunspec: soc_model) to check it against",
                "start",
            )


def load_procedure(ref: str, base: Path) -> Procedure:
    """The procedure ``ref``: a built-in name, else a YAML file relative to ``base``."""
    if ref in BUILTIN_PROCEDURES:
        text = resources.files("vpp.hil").joinpath("procedures", f"{ref}.yaml").read_text()
        data = yaml.safe_load(text)
        return validate_model(Procedure, data, f"procedure {ref}")
    path = base / ref
    if not path.suffix or not path.exists():
        raise config_error(
            f"unknown procedure {ref!r}: not a built-in {list(BUILTIN_PROCEDURES)} "
            f"nor a file in {base}",
            "procedure",
        )
    return validate_model(Procedure, _read_yaml(path, "procedure"), f"procedure {path}")


def load_plan(path: Path) -> tuple[Plan, dict[str, Procedure]]:
    """The plan at ``path`` and each case's procedure (by case name), checked: the
    target is supported, every procedure exists, every criteria key is known."""
    from vpp.orchestrator.grid.config import ComplianceConfig

    plan = validate_model(Plan, _read_yaml(path, "plan"), f"plan {path}")
    if plan.device is not None:
        _check_device(path, plan, plan.device)
    known = set(ComplianceConfig.model_fields) | set(ENVELOPE_LIMITS) | set(AGC_LIMITS)
    procedures: dict[str, Procedure] = {}
    for i, case in enumerate(plan.cases):
        try:
            proc = load_procedure(case.procedure, path.parent)
        except ConfigError as exc:
            raise config_error(
                f"plan {path}: field 'cases.{i}.procedure': {exc}", "procedure"
            ) from exc
        for where, limits in (("procedure", proc.criteria), (f"cases.{i}", case.criteria)):
            bad = sorted(set(limits) - known)
            if bad:
                raise config_error(
                    f"plan {path}: field '{where}.criteria.{bad[0]}': unknown criterion "
                    f"limit; known: {sorted(known)}",
                    "criteria",
                )
        trip = case.trip or proc.trip
        if trip is not None and plan.target == "device":
            raise config_error(
                f"plan {path}: field 'cases.{i}.procedure': " + _NO_DEVICE_TRIP.format(case.name),
                "trip",
            )
        if (proc.kind == "safety_trip") != (trip is not None):
            raise config_error(
                f"plan {path}: field 'cases.{i}.trip': "
                + ("a safety_trip procedure needs a trip (in the procedure or the case)"
                   if trip is None else "a trip goes with a procedure of kind 'safety_trip'"),
                "trip",
            )  # fmt: skip
        if trip is not None and trip.at_s >= case.duration_s:
            raise config_error(
                f"plan {path}: field 'cases.{i}.trip.at_s': the trip at {trip.at_s:g} s is "
                f"not within the case's duration_s {case.duration_s:g} s",
                "trip",
            )
        check_agc_case(path, i, plan, case, proc)
        procedures[case.name] = proc
    return plan, procedures


def case_trip(proc: Procedure, case: Case) -> CellOverVoltageTrip | OverTemperatureTrip | None:
    """The trip a case injects: its own, else its procedure's, else None."""
    return case.trip or proc.trip
