"""Where the logs of every vpp process go, and at what level (``vpp --log-level``,
``vpp --log-file``).

:func:`configure` sets the root logger of this process; :func:`settings` returns what
was set last, which the launcher hands to every child so that a site logs to one place.
A log file is opened in append mode by each process: every record is one ``write`` of
one line, so the processes' lines do not mix within a line.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from vpp.errors import ConfigError

__all__ = ["LEVELS", "LogSettings", "configure", "settings"]

#: The names ``--log-level`` takes.
LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class LogSettings:
    """A level (a :mod:`logging` level number) and a file (None: standard error)."""

    level: int = logging.WARNING
    file: str | None = None


_current = LogSettings()
_handler: list[logging.Handler | None] = [None]


def settings() -> LogSettings:
    """The settings of the last :func:`configure` (the defaults before any)."""
    return _current


def configure(logs: LogSettings, who: str) -> None:
    """Send this process's logs to ``logs.file`` (or standard error) at ``logs.level``,
    each line naming ``who`` and the pid. An unwritable file is a ConfigError."""
    global _current
    handler: logging.Handler
    if logs.file is not None:
        try:
            handler = logging.FileHandler(logs.file, mode="a", encoding="utf-8")
        except OSError as exc:
            err = ConfigError(f"--log-file: cannot open {logs.file!r}: {exc.strerror or exc}")
            err.field = "log_file"
            raise err from exc
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {who}[%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    # Only the handler set here before is replaced: others (a test's capture) stay.
    if _handler[0] is not None:
        root.removeHandler(_handler[0])
        _handler[0].close()
    root.addHandler(handler)
    root.setLevel(logs.level)
    _handler[0] = handler
    _current = logs
