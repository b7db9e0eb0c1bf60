"""Where a running site keeps its sockets, keys and ``site.json``: the run directory.

The directory of a site is, in order:

1. the config's ``bus.dir`` when set;
2. ``$VPP_RUN_DIR`` when set;
3. ``$XDG_RUNTIME_DIR/vpp/<site.name>`` when ``XDG_RUNTIME_DIR`` is an existing
   directory (systemd makes it per user, on a tmpfs);
4. ``/tmp/vpp-<uid>/<site.name>``.

``vpp run`` and ``vpp ctl`` compute it the same way from the same configuration, so
``vpp ctl --config SITE`` finds the site ``vpp run --config SITE`` started. Missing
directories are made with mode 0700; an existing one must belong to this user and be
writable by nobody else (anyone who could write there could put their own socket in
place of a process's). Characters of ``site.name`` other than letters, digits, ``.``,
``_`` and ``-`` become ``_`` in the path.

``site.json`` (mode 0600) says who holds the directory: the launcher's pid and start
time, the configuration file (or ``embedded``), the transport, every command endpoint,
the events endpoints, the keys directory, the field controllers and which of them owns
each unit. The launcher holds an exclusive lock on it while it runs (``flock``, released
by the kernel even when the launcher is killed), so a second ``vpp run`` of the same
site is refused while the first lives, and a ``site.json`` left by a dead one is
replaced. A launcher of a part of a site (``vpp run --only``) writes
``site-<names>.json`` instead, so the parts of one site on one host do not exclude each
other.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vpp.config.models import SiteConfig
from vpp.errors import VppError
from vpp.orchestrator.bus.topology import Topology
from vpp.validation import config_error

__all__ = [
    "IPC_PATH_MAX",
    "SITE_FILE",
    "RunDir",
    "SiteRunningError",
    "check_ipc_paths",
    "default_dir",
    "ensure_private_dir",
    "held",
    "ipc_files",
    "record_of",
    "site_dir",
]

#: The file naming who runs the site in its run directory.
SITE_FILE = "site.json"
#: Longest path of a unix socket Linux takes (sun_path is 108 bytes with its NUL).
IPC_PATH_MAX = 107
#: The environment variable that sets the run directory of every site.
ENV = "VPP_RUN_DIR"


class SiteRunningError(VppError):
    """A site already runs in this run directory (a live launcher holds ``site.json``)."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"a site already runs in {directory} ({who}); stop it, or give this one another "
            f"directory (bus.dir or ${ENV})"
        )
        self.directory = directory
        self.pid = pid


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return safe or "site"


def default_dir(site_name: str, env: Mapping[str, str] | None = None) -> Path:
    """The run directory of site ``site_name`` when the config has no ``bus.dir``."""
    env = os.environ if env is None else env
    if env.get(ENV):
        return Path(env[ENV])
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "vpp" / _safe_name(site_name)
    return Path("/tmp") / f"vpp-{os.getuid()}" / _safe_name(site_name)


def site_dir(site: SiteConfig, env: Mapping[str, str] | None = None) -> Path:
    """The run directory of ``site`` (``bus.dir``, else :func:`default_dir`)."""
    if site.bus.dir is not None:
        return Path(site.bus.dir)
    return default_dir(site.site.name, env)


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` and its missing parents with mode 0700; an existing ``path`` must be
    a directory of this user that no one else may write (a ConfigError otherwise)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise config_error(f"run directory {path} is not a directory", "bus.dir")
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise config_error(
            f"run directory {path} is not private (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o}): it must be this user's and writable by no one else",
            "bus.dir",
        )


def check_ipc_paths(directory: Path, names: Iterable[str]) -> None:
    """A ConfigError when a socket ``directory/NAME`` would be too long for Linux."""
    longest = max((str(directory / n) for n in names), key=lambda p: len(os.fsencode(p)))
    size = len(os.fsencode(longest))
    if size > IPC_PATH_MAX:
        raise config_error(
            f"run directory {directory} is too long for ipc sockets ({longest} is {size} "
            f"bytes, at most {IPC_PATH_MAX}): set ${ENV} or bus.dir to a shorter path",
            "bus.dir",
        )


def record_of(
    site: SiteConfig, topo: Topology, config: str | None, only: Iterable[str] | None
) -> dict[str, Any]:
    """What ``site.json`` says of a run of ``site`` on ``topo`` (besides pid and time)."""
    return {
        "site": site.site.name,
        "config": str(Path(config).resolve()) if config is not None else "embedded",
        "transport": site.bus.transport,
        "insecure": site.bus.insecure,
        "commands": dict(topo.commands),
        "events": topo.events_out,
        "events_in": topo.events_in,
        "keys_dir": str(topo.keys_dir) if topo.keys_dir is not None else None,
        "fields": list(topo.fields),
        "units": {u.id: {"field": f.id, "rated_power_kw": u.rated_power_kw}
                  for f in site.field for u in f.units},
        "only": sorted(only) if only is not None else None,
    }


def ipc_files(topo: Topology) -> list[Path]:
    """The socket files of an ipc topology (none on tcp)."""
    eps = [topo.events_in, topo.events_out, *topo.commands.values()]
    return [Path(e.removeprefix("ipc://")) for e in eps if e.startswith("ipc://")]


class RunDir:
    """The run directory of one launcher: :meth:`claim` it, :meth:`write` its record,
    :meth:`release` it at exit. ``part`` names the processes of a partial run."""

    def __init__(self, path: Path, part: Iterable[str] | None = None) -> None:
        self.path = path
        name = SITE_FILE if part is None else f"site-{'+'.join(sorted(part))}.json"
        self.record = path / name
        self._fd: int | None = None

    def claim(self) -> None:
        """Make the directory and lock the record, or raise :class:`SiteRunningError`."""
        ensure_private_dir(self.path)
        fd = os.open(self.record, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise SiteRunningError(self.path, pid) from None
        # A record left by a killed launcher may have been made with a wider mode.
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        self._fd = fd

    def write(self, info: Mapping[str, Any]) -> None:
        """Write the record (``pid`` and ``started`` added) under the held lock."""
        assert self._fd is not None, "RunDir.write before claim"
        data = {"pid": os.getpid(), "started": time.time(), **info}
        payload = (json.dumps(data, indent=2) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, payload, 0)

    def release(self, sockets: Iterable[Path] = (), scoped: Iterable[Path] = ()) -> None:
        """Remove the record; when no other launcher holds the directory, remove the
        ``sockets`` left and the ``scoped`` files and directories (keys made for this
        run) too, and the directory itself when that leaves it empty."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
        os.close(self._fd)
        self._fd = None
        if any(held(p) for p in self.path.glob("site*.json")):
            return
        for sock in sockets:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        for p in scoped:
            _remove_tree(p)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read_pid(fd: int) -> int | None:
    # The holder wrote its record after taking the lock: an instant where it is empty.
    for _ in range(20):
        try:
            pid = json.loads(os.pread(fd, 1 << 16, 0) or b"null")["pid"]
        except (ValueError, TypeError, KeyError):
            time.sleep(0.05)
            continue
        return pid if isinstance(pid, int) else None
    return None


def held(record: Path) -> bool:
    """Whether a live launcher holds ``record`` (its lock; False when unreadable)."""
    try:
        fd = os.open(record, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove_tree(child)
        with contextlib.suppress(OSError):
            path.rmdir()
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
