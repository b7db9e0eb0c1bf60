"""SunSpec model blocks on top of pysunspec2's model definitions.

pysunspec2 (package ``sunspec2``) ships the SunSpec information models as JSON and
knows their layout: point offsets and lengths, types, scale-factor points, symbols and
the "not implemented" value of each type. This module is the one place vpp touches it
(pysunspec2 has no type hints), so the driver and the simulator see typed values:

- :class:`ModelBlock` holds one model instance of a device: its id, Modbus address
  (of the ``ID`` register) and length ``L``, decoded from the registers read.
- :meth:`ModelBlock.value` gives a point's engineering value (raw x 10^sf) or None when
  the point or its scale factor is not implemented.
- :meth:`ModelBlock.encode` turns an engineering value into the registers to write,
  with the model's scale factor and the type's range checked first.

Scaling is done here rather than with pysunspec2's ``cvalue``: that returns the raw,
unscaled number when the scale factor itself is not implemented.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

from sunspec2 import device as ss_device  # type: ignore[import-untyped]
from sunspec2 import mb as ss_mb

__all__ = [
    "END_MODEL_ID",
    "MODEL_NAMES",
    "SUNS_MARKER",
    "ModelBlock",
    "SunSpecLayoutError",
    "bytes_to_words",
    "iter_points",
    "model_length",
    "words_to_bytes",
]

#: "SunS" as two big-endian registers.
SUNS_MARKER = (0x5375, 0x6E53)
END_MODEL_ID = 0xFFFF

#: The models vpp uses for a BESS, with their SunSpec group names.
MODEL_NAMES = {
    1: "common",
    701: "DERMeasureAC",
    702: "DERCapacity",
    704: "DERCtlAC",
    711: "DERFreqDroop",
    713: "DERStorageCapacity",
    802: "battery",
}

# Writable range of each integer type, without the "not implemented" value that the
# type reserves (writing it would read back as "no value").
_RANGES = {
    "int16": (-0x7FFF, 0x7FFF),
    "uint16": (0, 0xFFFE),
    "enum16": (0, 0xFFFE),
    "bitfield16": (0, 0xFFFE),
    "int32": (-0x7FFFFFFF, 0x7FFFFFFF),
    "uint32": (0, 0xFFFFFFFE),
    "enum32": (0, 0xFFFFFFFE),
    "bitfield32": (0, 0xFFFFFFFE),
}


class SunSpecLayoutError(ValueError):
    """A model's registers do not fit its definition (length, count, unknown model)."""


def words_to_bytes(words: list[int]) -> bytes:
    """Registers as the big-endian bytes pysunspec2 decodes."""
    return struct.pack(f">{len(words)}H", *words)


def bytes_to_words(data: bytes) -> list[int]:
    """Big-endian bytes as registers."""
    return list(struct.unpack(f">{len(data) // 2}H", data))


def iter_points(group: Any) -> Iterator[Any]:
    """Every pysunspec2 point of a model or group, nested groups included."""
    yield from group.points.values()
    for sub in group.groups.values():
        for g in sub if isinstance(sub, list) else [sub]:
            yield from iter_points(g)


def model_length(model_id: int) -> int:
    """``L`` of a model without repeating groups, from its definition."""
    return int(ss_device.Model(model_id=model_id).len) - 2


class ModelBlock:
    """One model instance of a device: id, address of its ``ID`` register, length ``L``
    (registers after ``ID`` and ``L``), and the point values of the last :meth:`load`."""

    def __init__(self, model_id: int, address: int, length: int) -> None:
        """A block not yet loaded (no values until :meth:`load`)."""
        self.model_id = model_id
        self.address = address
        self.length = length
        self._model: Any = None

    @property
    def name(self) -> str:
        """The model's SunSpec group name (e.g. ``DERMeasureAC``), or its id."""
        return MODEL_NAMES.get(self.model_id, str(self.model_id))

    @property
    def loaded(self) -> bool:
        """Whether values have been loaded."""
        return self._model is not None

    def load(self, words: list[int]) -> None:
        """Decode the model's registers (``ID``, ``L`` and the ``L`` that follow).

        Raises SunSpecLayoutError if they do not fit the model's definition.
        """
        if len(words) != self.length + 2:
            raise SunSpecLayoutError(
                f"model {self.model_id} ({self.name}): {len(words)} registers, "
                f"expected {self.length + 2}"
            )
        data = words_to_bytes(words)
        model = self._model
        try:
            if model is None:
                model = ss_device.Model(
                    model_id=self.model_id,
                    model_addr=self.address,
                    model_len=self.length,
                    data=data,
                )
            else:
                # The layout is fixed by L; decoding into the same points is 3x cheaper
                # than building the model again.
                model.error_info = ""
                model.set_mb(data, dirty=False)
        except Exception as exc:  # pysunspec2 raises bare ModelError/KeyError on bad data
            raise SunSpecLayoutError(f"model {self.model_id} ({self.name}): {exc}") from exc
        if model.error_info:
            raise SunSpecLayoutError(
                f"model {self.model_id} ({self.name}) at {self.address}: "
                f"{model.error_info.strip()}"
            )
        self._model = model

    def _point(self, name: str, group: str | None = None, index: int = 0) -> Any:
        if self._model is None:
            raise SunSpecLayoutError(f"model {self.model_id} ({self.name}) not loaded")
        owner = self._model
        if group is not None:
            groups = owner.groups.get(group)
            if isinstance(groups, list):
                if index >= len(groups):
                    raise SunSpecLayoutError(
                        f"model {self.model_id}: group {group}[{index}] absent"
                    )
                groups = groups[index]
            if groups is None:
                raise SunSpecLayoutError(f"model {self.model_id}: no group {group!r}")
            owner = groups
        point = owner.points.get(name)
        if point is None:
            raise SunSpecLayoutError(f"model {self.model_id} ({self.name}) has no point {name!r}")
        return point

    def has(self, name: str) -> bool:
        """Whether the model's definition has a top-level point ``name``."""
        return self._model is not None and name in self._model.points

    def raw(self, name: str, group: str | None = None, index: int = 0) -> int | str | None:
        """The point's register value, None if not implemented."""
        value = self._point(name, group, index).value
        return value if isinstance(value, (int, str)) else None

    def scale_factor(self, name: str, group: str | None = None, index: int = 0) -> int | None:
        """The exponent applied to point ``name`` (0 if it has none); None when its scale
        factor point is not implemented or outside the -10..10 SunSpec allows."""
        point = self._point(name, group, index)
        sf = point.pdef.get("sf")
        if sf is None:
            return 0
        if isinstance(sf, int):
            return sf
        sf_point = point.group.points.get(sf) or self._model.points.get(sf)
        value = None if sf_point is None else sf_point.value
        if not isinstance(value, int) or not -10 <= value <= 10:
            return None
        return value

    def value(self, name: str, group: str | None = None, index: int = 0) -> float | None:
        """Engineering value: raw x 10^sf; None if the point or its scale factor is not
        implemented."""
        raw = self.raw(name, group, index)
        if not isinstance(raw, int):
            return None
        sf = self.scale_factor(name, group, index)
        if sf is None:
            return None
        # round() drops the binary noise of 10**-n (0.1 * 3 -> 0.30000000000000004).
        return round(raw * 10.0**sf, max(0, -sf))

    def symbol(self, name: str, group: str | None = None, index: int = 0) -> str | None:
        """The symbol name of an enum point's value, None if unknown or not implemented."""
        point = self._point(name, group, index)
        raw = point.value
        for sym in point.pdef.get("symbols", []):
            if sym.get("value") == raw:
                return str(sym["name"])
        return None

    def symbol_value(self, name: str, symbol: str) -> int:
        """The code of ``symbol`` of enum point ``name`` (SunSpecLayoutError if none)."""
        for sym in self._point(name).pdef.get("symbols", []):
            if sym.get("name") == symbol:
                return int(sym["value"])
        raise SunSpecLayoutError(f"point {name!r} has no symbol {symbol!r}")

    def address_of(self, name: str) -> int:
        """Modbus address of top-level point ``name``."""
        return self.address + int(self._point(name).offset)

    def point_type(self, name: str) -> str:
        """SunSpec type of top-level point ``name`` (``int32``, ``enum16``, ...)."""
        return str(self._point(name).pdef["type"])

    def sf_point(self, name: str) -> str | None:
        """The name of the point holding ``name``'s scale factor (None: a constant one,
        or none)."""
        sf = self._point(name).pdef.get("sf")
        return sf if isinstance(sf, str) else None

    def writable(self, name: str) -> bool:
        """Whether the definition allows writing point ``name``."""
        return bool(self._point(name).pdef.get("access") == "RW")

    def encode(self, name: str, value: float) -> tuple[int, list[int]]:
        """(address, registers) that write engineering ``value`` to point ``name``.

        Raises SunSpecLayoutError if the point has no usable scale factor, is not an
        integer type, or the scaled value does not fit the type.
        """
        point = self._point(name)
        ptype = str(point.pdef["type"])
        if ptype not in _RANGES:
            raise SunSpecLayoutError(f"point {name!r} of type {ptype} cannot be written")
        sf = self.scale_factor(name)
        if sf is None:
            raise SunSpecLayoutError(f"point {name!r}: its scale factor is not implemented")
        if not math.isfinite(value):
            raise SunSpecLayoutError(f"point {name!r}: {value!r} is not a finite number")
        raw = round(value / 10.0**sf)
        lo, hi = _RANGES[ptype]
        if not lo <= raw <= hi:
            raise SunSpecLayoutError(
                f"point {name!r}: {value:g} is {raw} registers at scale 10^{sf}, "
                f"outside {ptype} range {lo}..{hi}"
            )
        data = ss_mb.point_type_info[ptype].to_data(raw, int(point.len) * 2)
        return self.address + int(point.offset), bytes_to_words(data)
