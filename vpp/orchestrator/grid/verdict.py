"""The fleet's verdict in a published ``compliance`` report.

Apart from :mod:`.compliance` (which re-exports it) because its readers (the launcher's
status, the API's metrics, the history reports) must not import numpy and the checks
to read one field of a message.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fleet_verdict"]


def fleet_verdict(report: Mapping[str, object]) -> str:
    """The fleet's verdict in a ``compliance`` report as published: ``pass``, ``fail``,
    or ``not judged`` (the grid gave a reason instead of a fleet result)."""
    fleet = report.get("fleet")
    if not isinstance(fleet, Mapping):
        return "not judged"
    return "pass" if fleet.get("passed") else "fail"
