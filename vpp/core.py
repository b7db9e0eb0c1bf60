"""The Python face of the compiled real-time core (``vpp._core``), re-exported by name."""

from vpp._core import Ticker

__all__ = ["Ticker"]
