"""Files and directories only their owner may read: the history, its audit key and anchor.

The history holds who commanded what and the audit key that makes its chain of commands
tamper-evident (:mod:`vpp.orchestrator.audit`), so none of it may be readable by other
users of the host. Each file is created with its final mode in the ``open`` call itself
(``O_CREAT | O_EXCL``, mode 0600), never created first and narrowed afterwards, which
would leave a moment in which another user could open it and keep the descriptor.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "create_private", "private_dirs", "write_private"]

#: Mode of every file the history creates (owner read/write).
FILE_MODE = 0o600
#: Mode of every directory the history creates (owner only).
DIR_MODE = 0o700


def private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each with mode 0700.

    ``Path.mkdir(parents=True)`` gives only the last directory ``mode``, the parents the
    umask's default (often 0755), hence one by one.
    """
    missing: list[Path] = []
    d = directory
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)


def create_private(path: Path, data: bytes = b"") -> bool:
    """Create ``path`` with mode 0600 holding ``data``; False (and nothing written) when
    it exists already, whatever its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    return True


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file of mode 0600 holding ``data``, atomically: a reader sees
    the old content or the new one, never a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    # A temporary file left by a crash may have another mode: start from a fresh one.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
