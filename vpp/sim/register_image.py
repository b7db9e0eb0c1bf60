"""The register image of a simulated Modbus device: what its registers hold, by map.

The device model writes engineering values by point name (:meth:`RegisterImage.put`);
the pymodbus server's action hook copies them into the live registers before every
read (:meth:`RegisterImage.copy_out`). :meth:`RegisterImage.sim_device` describes the
map's layout to pymodbus, so that unmapped addresses answer exception 2.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from vpp.drivers.register_map import Point, PointType, RegisterMap, Table, encode
from vpp.errors import ConfigError

__all__ = ["Action", "RegisterImage"]

#: pymodbus's action hook: (function code, start, address, count, registers, values).
Action = Callable[
    [int, int, int, int, list[int], list[int] | list[bool] | None],
    Coroutine[Any, Any, ExcCodes | None],
]


class RegisterImage:
    """Register values per table and address, written through a register map."""

    def __init__(self, regmap: RegisterMap) -> None:
        """An all-zero image of ``regmap``'s points."""
        self.map = regmap
        self.tables: dict[Table, dict[int, int | bool]] = {t: {} for t in Table}
        #: Values the map could not carry (out of the point's range); each kept the last.
        self.encode_errors = 0

    def find(self, name: str) -> Point | None:
        """The point called ``name``, or None if the map has none (points are optional)."""
        try:
            return self.map.point(name)
        except ConfigError:
            return None

    def put(self, name: str, value: float | bool) -> None:
        """Write point ``name`` (vpp units and sign); a point the map lacks is skipped."""
        point = self.find(name)
        if point is None:
            return
        image = self.tables[point.table]
        if point.type is PointType.BOOL:
            image[point.address] = bool(value)
            return
        try:
            words = encode(point, float(value))
        except ConfigError:
            # A value the map cannot carry keeps the last one; counted, never fatal.
            self.encode_errors += 1
            return
        for i, w in enumerate(words):
            image[point.address + i] = w

    def copy_out(self, table: Table, start: int, registers: list[int]) -> None:
        """Copy the image into pymodbus's live registers of ``table`` from ``start``."""
        image = self.tables[table]
        if table.is_bits:
            # Bit tables are packed 16 to a register, bit 0 first, from register `start`.
            for addr, bit in image.items():
                i, b = divmod(addr, 16)
                i -= start
                if 0 <= i < len(registers):
                    registers[i] = (registers[i] | (1 << b)) if bit else (registers[i] & ~(1 << b))
        else:
            for addr, word in image.items():
                if 0 <= addr - start < len(registers):
                    registers[addr - start] = int(word)

    def sim_device(self, device_id: int, action: Action) -> SimDevice:
        """The pymodbus device of this layout, calling ``action`` before every access."""
        tables: list[list[SimData]] = []
        for table in (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT):
            blocks: list[SimData] = []
            image = self.tables[table]
            for p in self.map.table(table):
                if table.is_bits:
                    value = bool(image.get(p.address, False))
                    blocks.append(SimData(p.address, values=[value], datatype=DataType.BITS))
                else:
                    words = [int(image.get(p.address + i, 0)) for i in range(p.type.words)]
                    blocks.append(
                        SimData(
                            p.address,
                            values=words,
                            datatype=DataType.REGISTERS,
                            readonly=p.access == "r",
                        )
                    )
            if not blocks:
                # pymodbus needs every table defined; one invalid register rejects all access.
                blocks.append(SimData(0, datatype=DataType.INVALID))
            tables.append(blocks)
        return SimDevice(
            id=device_id,
            simdata=(tables[0], tables[1], tables[2], tables[3]),
            action=action,
        )
