"""vpp: a virtual power plant controller for battery energy storage fleets.

The real-time core is compiled (``vpp._core``); ``vpp.core`` and ``vpp.c37118`` are
its Python faces.
"""

from vpp._core import __version__

__all__ = ["__version__"]
