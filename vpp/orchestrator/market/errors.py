"""Errors of the market gateway, under :class:`vpp.errors.VppError` and ``ValueError``.

Each says what and where: ``field`` (the bid or schedule field at fault), ``block``
(the 15-minute delivery block, 0-95, when one is concerned) and ``reason``.
"""

from __future__ import annotations

from vpp.errors import VppError

__all__ = ["BidError", "BidWindowError", "ExchangeFileError", "MarketError", "ScheduleError"]


class MarketError(VppError, ValueError):
    """Base of the market errors."""

    def __init__(self, reason: str, *, field: str = "", block: int | None = None) -> None:
        where = []
        if block is not None:
            where.append(f"block {block}")
        if field:
            where.append(field)
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + reason)
        self.reason = reason
        self.field = field
        self.block = block


class BidError(MarketError):
    """A bid breaks an exchange rule (price band, tick, minimum volume, volume step, block)."""


class BidWindowError(MarketError):
    """A bid was made outside the bid window of its product (or after gate closure)."""


class ScheduleError(MarketError):
    """A schedule cannot be built or breaks a battery constraint (infeasible, out of bounds)."""



class ExchangeFileError(MarketError):
    """A file of the file exchange (a result or price file) that cannot be taken: the
    message names the file, the line (1 = the header) and the column at fault."""

    def __init__(self, path: str, reason: str, *, line: int | None = None,
                 field: str = "") -> None:  # fmt: skip
        where = path if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {f'{field}: ' if field else ''}{reason}")
        self.reason = reason
        self.field = field
        self.path = path
        self.line = line
