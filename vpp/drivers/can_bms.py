"""CAN BMS driver: listens to a battery management system's periodic CAN frames.

The message layouts live in a DBC file (``vpp/drivers/dbc/bms.dbc`` by default, see
docs/protocols.md), decoded with cantools. A background task drains the python-can bus
and keeps the latest decoded value of every message with its receive time; a status read
is a snapshot of that, with the messages not heard within their ``stale_after_s`` listed
as stale. Unknown ids and malformed frames are counted and logged, never raised: one bad
frame on a shared bus must not stop the driver.

The bus is opened by :func:`vpp.drivers.can_bus.open_bus`: a real one through python-can
(``socketcan``), or the simulated ``udp_loopback`` bus, which refuses frames from any
source that is not this host; those are counted in ``frames_refused`` and logged, once
per source address.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import can
import cantools
from pydantic import Field, ValidationInfo, field_validator

from vpp.aio import cancel_and_wait
from vpp.core import Telemetry
from vpp.drivers.base import BaseProtocol, ProtocolConfig, Status
from vpp.drivers.can_bus import (
    LOOPBACK_INTERFACE,
    LOOPBACK_OPTIONS,
    ForeignFrameError,
    multicast_group,
    open_bus,
)
from vpp.drivers.errors import DeviceOfflineError, ValidationError
from vpp.validation import config_error

__all__ = [
    "ALARMS",
    "REQUIRED_MESSAGES",
    "CanBmsConfig",
    "CanBmsProtocol",
    "default_dbc_path",
    "load_dbc",
]

log = logging.getLogger(__name__)

CELLS = 16
SENSORS = 8
#: Alarm bits of ``BMS_Alarms``, in bit order (bit 0 first); ``bms_faults`` keeps the order.
ALARMS = (
    "OverVoltage",
    "UnderVoltage",
    "OverTemperature",
    "UnderTemperature",
    "OverCurrent",
    "Imbalance",
    "DeadCell",
    "CommFault",
)
#: Messages the safety telemetry is built from: if one is stale, so is the telemetry.
REQUIRED_MESSAGES = (
    "BMS_CellVoltages1",
    "BMS_CellVoltages2",
    "BMS_CellVoltages3",
    "BMS_CellVoltages4",
    "BMS_Temperatures",
    "BMS_PackStatus",
    "BMS_Alarms",
)
# A message is stale after this many of its periods without a frame, unless configured.
_STALE_PERIODS = 3.0
# The receive task polls the bus this often when it is idle (virtual buses have no fd).
_POLL_S = 0.005
# Frames handled before the receive task yields to the event loop.
_BATCH = 256
# Refused sources logged one by one; past this many only the counter goes on, so that a
# flood of forged source addresses cannot flood the log or grow the set.
_REFUSED_LOGGED = 32


def default_dbc_path() -> Path:
    """The DBC file shipped with the package."""
    return Path(str(resources.files("vpp.drivers") / "dbc" / "bms.dbc"))


def load_dbc(path: Path) -> cantools.database.can.Database:
    """The CAN database of DBC file ``path`` (parsed once per file and version: it is
    only read, and each BMS unit's config check and driver would parse it again, about
    15 ms each of a field controller's start)."""
    st = path.stat()
    return _parsed_dbc(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _parsed_dbc(path: str, _mtime_ns: int, _size: int) -> cantools.database.can.Database:
    db = cantools.database.can.Database()
    db.add_dbc_file(path)
    return db


class CanBmsConfig(ProtocolConfig):
    """Settings of :class:`CanBmsProtocol`."""

    interface: str = Field(
        default="socketcan",
        min_length=1,
        description="python-can interface (socketcan for a real bus), or udp_loopback: the "
        "simulated bus between processes of this host, which refuses frames from elsewhere",
    )
    channel: str = Field(
        min_length=1,
        description="bus channel, e.g. can0, a virtual name, or the IPv4 multicast group of "
        "udp_loopback",
    )
    dbc: Path | None = Field(default=None, description="DBC file; None = the shipped one")
    bus_options: dict[str, Any] = Field(
        default_factory=dict,
        description="more arguments of the bus (e.g. bitrate; port of udp_loopback; port, "
        "hop_limit of udp_multicast, which takes frames from any host)",
    )
    stale_after_s: dict[str, float] = Field(
        default_factory=dict,
        description="per message: seconds without a frame before it is stale "
        "(default three times the message's period)",
    )

    @field_validator("channel")
    @classmethod
    def _loopback_group(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("interface") == LOOPBACK_INTERFACE:
            multicast_group(value)  # ValueError for anything but an IPv4 group
        return value

    @field_validator("bus_options")
    @classmethod
    def _loopback_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        unknown = sorted(set(value) - LOOPBACK_OPTIONS)
        if info.data.get("interface") == LOOPBACK_INTERFACE and unknown:
            raise ValueError(f"udp_loopback takes no options {unknown} (it never leaves the "
                             f"host); known: {sorted(LOOPBACK_OPTIONS)}")  # fmt: skip
        return value

    @field_validator("stale_after_s")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if not seconds > 0:
                raise ValueError(f"stale_after_s[{name!r}] must be > 0, got {seconds}")
        return value


class CanBmsProtocol(BaseProtocol):
    """A read-only driver of a 16-cell BMS on CAN (see the module docstring).

    Status keys (vpp units, current positive = discharge): ``cell_NN_v``, ``temp_N_c``,
    ``cell_v_min``, ``cell_v_max``, ``cell_imbalance_v``, ``temp_min_c``, ``temp_max_c``,
    ``pack_voltage_v``, ``current_a``, ``soc_pct``, ``state``, ``soh_pct``,
    ``cycle_count``, ``alarm_<name>``, ``balancing_NN``, ``bms_faults``, ``stale`` (any
    message stale), ``stale_<message>``, ``data_time`` (UNIX s: when the oldest of the
    messages the safety telemetry needs arrived, 0.0 while one never has), ``frames``,
    ``frames_unknown``, ``frames_malformed``, ``frames_refused`` (from a source the bus
    does not accept; not in ``frames``). Data of a message never received is absent.
    """

    Config: ClassVar[type[ProtocolConfig]] = CanBmsConfig
    commands: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _database(cls, config: CanBmsConfig) -> cantools.database.can.Database:
        path = config.dbc or default_dbc_path()
        try:
            db = load_dbc(path)
        except (OSError, cantools.database.errors.UnsupportedDatabaseFormatError) as exc:
            raise config_error(f"protocol 'can_bms': field 'dbc': cannot load {str(path)!r}: "
                               f"{getattr(exc, 'strerror', None) or exc}", "dbc") from exc
        names = {m.name for m in db.messages}
        unknown = sorted(set(config.stale_after_s) - names)
        if unknown:
            # Only the DBC knows the message names, so this check cannot live in Config.
            raise config_error(
                f"protocol 'can_bms': field 'stale_after_s': unknown messages {unknown}; "
                f"known: {sorted(names)}",
                "stale_after_s",
            )
        return db

    @classmethod
    def check_config(cls, config: ProtocolConfig) -> None:
        """The DBC file loads and ``stale_after_s`` names its messages."""
        if isinstance(config, CanBmsConfig):
            cls._database(config)

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """Load the DBC and check the stale overrides name its messages."""
        super().__init__(config, name=name)
        assert isinstance(config, CanBmsConfig)
        self.cfg = config
        self.db = self._database(config)
        self.stale_after: dict[str, float] = {}
        for msg in self.db.messages:
            period = (msg.cycle_time or 1000) / 1000.0
            self.stale_after[msg.name] = config.stale_after_s.get(msg.name, _STALE_PERIODS * period)
        #: message name -> (UNIX receive time, decoded signals)
        self.latest: dict[str, tuple[float, dict[str, float]]] = {}
        self.frames = 0
        self.frames_unknown = 0
        self.frames_malformed = 0
        self.frames_refused = 0
        self._refused_sources: set[str] = set()
        self._bus: can.BusABC | None = None
        self._task: asyncio.Task[None] | None = None

    # --- transport ------------------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.cfg
        try:
            self._bus = open_bus(cfg.interface, cfg.channel, cfg.bus_options)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise DeviceOfflineError(f"cannot open CAN bus: {exc}", resource=self.name) from exc
        if cfg.interface == "udp_multicast":
            log.warning("%s: udp_multicast takes CAN frames from any host that reaches %s; "
                        "use udp_loopback for a simulated bus on this host", self.name,
                        cfg.channel)  # fmt: skip
        self._task = asyncio.create_task(self._receive_loop(self._bus), name=f"{self.name}-rx")

    async def _disconnect(self) -> None:
        task, self._task = self._task, None
        for failed in await cancel_and_wait([task]):
            log.error("%s: the receive loop failed", self.name, exc_info=failed.exception())
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()

    async def _read(self) -> Status:
        if self._task is not None and self._task.done():
            raise DeviceOfflineError("the receive task stopped", resource=self.name)
        return self.status(time.time())

    async def _write(self, command: str, params: Mapping[str, Any]) -> str:
        raise ValidationError("the CAN BMS driver is read-only", resource=self.name)

    async def _receive_loop(self, bus: can.BusABC) -> None:
        while True:
            # Drain a bounded batch, then yield: a busy bus must not starve the loop.
            for _ in range(_BATCH):
                try:
                    msg = bus.recv(timeout=0)
                except ForeignFrameError as exc:
                    # Not a frame of this bus: counted, and the batch goes on, so that a
                    # flood of them does not delay the real frames behind it.
                    self._refuse(exc)
                    continue
                except can.CanError:
                    # A transient bus error (error frame, overrun): keep listening.
                    log.warning("%s: CAN receive error", self.name, exc_info=True)
                    msg = None
                if msg is None:
                    await asyncio.sleep(_POLL_S)
                    break
                if msg.is_error_frame or msg.is_remote_frame:
                    continue
                self.handle_frame(msg.arbitration_id, bytes(msg.data), time.time())
            else:
                await asyncio.sleep(0)

    def _refuse(self, exc: ForeignFrameError) -> None:
        self.frames_refused += 1
        seen = self._refused_sources
        if exc.source in seen or len(seen) > _REFUSED_LOGGED:
            return
        seen.add(exc.source)
        if len(seen) > _REFUSED_LOGGED:
            log.warning("%s: CAN frames refused from more than %d sources; from now on "
                        "only counted in frames_refused", self.name, _REFUSED_LOGGED)  # fmt: skip
        else:
            log.warning("%s: %s (counted in frames_refused; further frames from it are "
                        "not logged)", self.name, exc)  # fmt: skip

    def handle_frame(self, frame_id: int, data: bytes, received: float) -> None:
        """Decode one frame into :attr:`latest`; count (never raise on) a bad frame."""
        self.frames += 1
        try:
            msg = self.db.get_message_by_frame_id(frame_id)
        except KeyError:
            self.frames_unknown += 1
            log.debug("%s: unknown CAN id 0x%x", self.name, frame_id)
            return
        if len(data) != msg.length:
            # cantools would decode a longer frame silently; a wrong length means the
            # sender uses another layout, so its values cannot be trusted.
            self.frames_malformed += 1
            log.warning(
                "%s: %s with %d bytes, expected %d", self.name, msg.name, len(data), msg.length
            )
            return
        try:
            values = msg.decode(data, decode_choices=False, scaling=True)
        except Exception:  # cantools raises several types for a bad payload
            self.frames_malformed += 1
            log.warning("%s: cannot decode %s", self.name, msg.name, exc_info=True)
            return
        if not isinstance(values, dict):  # multiplexed containers: not in a BMS DBC
            self.frames_malformed += 1
            return
        try:
            numbers = {k: float(v) for k, v in values.items()}  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.frames_malformed += 1
            return
        self.latest[msg.name] = (received, numbers)

    # --- views ----------------------------------------------------------------------------

    def stale_messages(self, now: float) -> list[str]:
        """Messages not received within their ``stale_after_s`` at ``now`` (UNIX s)."""
        out = []
        for msg in self.db.messages:
            seen = self.latest.get(msg.name)
            if seen is None or now - seen[0] > self.stale_after[msg.name]:
                out.append(msg.name)
        return out

    def _signals(self, message: str) -> dict[str, float]:
        seen = self.latest.get(message)
        return seen[1] if seen else {}

    def cells_v(self) -> list[float] | None:
        """The 16 latest cell voltages in V, None until every cell message was received."""
        cells: list[float] = []
        for i in range(4):
            sig = self._signals(f"BMS_CellVoltages{i + 1}")
            if not sig:
                return None
            cells += [sig[f"Cell{4 * i + j + 1:02d}_mV"] / 1000.0 for j in range(4)]
        return cells

    def temperatures_c(self) -> list[float] | None:
        """The 8 latest temperatures in degrees C, None before the first frame."""
        sig = self._signals("BMS_Temperatures")
        return [sig[f"Temp{j + 1}_C"] for j in range(SENSORS)] if sig else None

    def bms_faults(self) -> int:
        """The alarm bits as an int (bit k = ``ALARMS[k]``), 0 before the first frame."""
        sig = self._signals("BMS_Alarms")
        return sum(1 << k for k, name in enumerate(ALARMS) if sig.get(name))

    def status(self, now: float) -> Status:
        """The latest values at ``now`` (UNIX s): see the class docstring for the keys."""
        out: Status = {}
        cells = self.cells_v()
        if cells is not None:
            for i, v in enumerate(cells):
                out[f"cell_{i + 1:02d}_v"] = v
            out["cell_v_min"], out["cell_v_max"] = min(cells), max(cells)
            out["cell_imbalance_v"] = max(cells) - min(cells)
        temps = self.temperatures_c()
        if temps is not None:
            for i, t in enumerate(temps):
                out[f"temp_{i + 1}_c"] = t
            out["temp_min_c"], out["temp_max_c"] = min(temps), max(temps)
        pack = self._signals("BMS_PackStatus")
        if pack:
            out["pack_voltage_v"] = pack["PackVoltage_V"]
            out["current_a"] = pack["Current_A"]
            out["soc_pct"] = pack["SOC_pct"]
            out["state"] = pack["State"]
        health = self._signals("BMS_Health")
        if health:
            out["soh_pct"] = health["SOH_pct"]
            out["cycle_count"] = health["CycleCount"]
        alarms = self._signals("BMS_Alarms")
        if alarms:
            for name in ALARMS:
                out[f"alarm_{name}"] = bool(alarms[name])
            out["bms_faults"] = float(self.bms_faults())
        balancing = self._signals("BMS_Balancing")
        for j in range(CELLS) if balancing else ():
            out[f"balancing_{j + 1:02d}"] = bool(balancing[f"Balance{j + 1:02d}"])
        stale = set(self.stale_messages(now))
        out["stale"] = bool(stale)
        # The age of the data, not of the poll: a silent bus keeps its old values here.
        out["data_time"] = self.data_time()
        for msg in self.db.messages:
            out[f"stale_{msg.name}"] = msg.name in stale
        out["frames"] = float(self.frames)
        out["frames_unknown"] = float(self.frames_unknown)
        out["frames_malformed"] = float(self.frames_malformed)
        out["frames_refused"] = float(self.frames_refused)
        return out

    def data_time(self) -> float:
        """When the oldest required message arrived (UNIX s), 0.0 while one never has."""
        seen = [self.latest[m][0] for m in REQUIRED_MESSAGES if m in self.latest]
        return min(seen) if len(seen) == len(REQUIRED_MESSAGES) else 0.0

    def telemetry(self, now: float) -> Telemetry:
        """The safety envelope's telemetry from the latest values at ``now`` (UNIX s).

        Fresh data is stamped ``now``; if a required message is stale the timestamp is
        that of the oldest required message (0.0 if one never arrived), so that the
        envelope's own staleness check stops the unit.
        """
        stale = set(self.stale_messages(now)) & set(REQUIRED_MESSAGES)
        stamp = now if not stale else self.data_time()
        cells = self.cells_v() or [0.0] * CELLS
        temps = self.temperatures_c() or [0.0]
        pack = self._signals("BMS_PackStatus")
        voltage = pack.get("PackVoltage_V", 0.0)
        current = pack.get("Current_A", 0.0)
        return Telemetry(
            timestamp=stamp,
            pack_voltage_v=voltage,
            current_a=current,
            temp_min_c=min(temps),
            temp_max_c=max(temps),
            soc_pct=pack.get("SOC_pct", 0.0),
            cells=cells,
            soh_pct=self._signals("BMS_Health").get("SOH_pct", 100.0),
            bms_faults=self.bms_faults(),
            power_kw=voltage * current / 1000.0,
        )
