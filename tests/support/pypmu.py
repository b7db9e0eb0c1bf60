"""pyPMU (PyPI ``synchrophasor``) as a foreign C37.118 implementation for tests.

pyPMU still imports ``collections.Sequence``, removed in Python 3.10; it is aliased to
``collections.abc.Sequence`` before the import. Known pyPMU quirks worked around here:
``frasec=0`` is falsy, so pyPMU would substitute the wall-clock fraction (a tuple is
passed instead); and with float FREQ it range-checks the value as a deviation, so the
pipeline tests use integer FREQ (mHz deviation from nominal, as the standard says).
"""

from __future__ import annotations

import collections
import collections.abc
from typing import Any

collections.Sequence = collections.abc.Sequence  # type: ignore[attr-defined]

from synchrophasor.frame import (  # type: ignore[import-untyped]  # noqa: E402
    CommandFrame,
    CommonFrame,
    ConfigFrame2,
    DataFrame,
    HeaderFrame,
)

__all__ = ["CommandFrame", "CommonFrame", "ConfigFrame2", "DataFrame", "HeaderFrame", "Stream"]

STAT_OK = ("ok", True, "timestamp", False, False, False, 0, "<10", 0)


class Stream:
    """A one-PMU stream (4 phasors, 3 analogs, 1 digital word) built by pyPMU."""

    def __init__(
        self,
        idcode: int = 7734,
        rate: int = 50,
        soc0: int = 1_700_000_000,
        data_format: tuple[bool, bool, bool, bool] = (True, False, False, False),
    ) -> None:
        self.rate, self.soc0, self.k = rate, soc0, 0
        self.time_base = 1_000_000
        self.cfg: Any = ConfigFrame2(
            idcode,
            self.time_base,
            1,
            "Station A",
            idcode,
            data_format,
            4,
            3,
            1,
            ["VA", "VB", "VC", "I1", "AN1", "AN2", "AN3"] + [f"B{i}" for i in range(16)],
            [(915527, "v"), (915527, "v"), (915527, "v"), (45776, "i")],
            [(1, "pow"), (1, "rms"), (1, "peak")],
            [(0x0000, 0xFFFF)],
            50,
            1,
            rate,
            soc=soc0,
            frasec=(1, "+"),
        )

    def config_bytes(self) -> bytes:
        return bytes(self.cfg.convert2bytes())

    def frame(self, freq_hz: float, stat: Any = STAT_OK) -> tuple[float, bytes]:
        """The next data frame carrying ``freq_hz``; returns (frame time, bytes)."""
        soc = self.soc0 + self.k // self.rate
        fraction = (self.k % self.rate) * (self.time_base // self.rate)
        self.k += 1
        mhz = round((freq_hz - 50.0) * 1000)
        df = DataFrame(
            self.cfg.get_id_code(),
            stat,
            [(14635, 0), (14635, -20944), (14635, 20944), (1092, 0)],
            mhz,
            0,
            [100, 1000, 10000],
            [0x3C12],
            self.cfg,
            soc=soc,
            frasec=(fraction, "+"),
        )
        return soc + fraction / self.time_base, bytes(df.convert2bytes())
