"""Fixtures of the bus tests: short ipc directories and a keys directory with Curve pairs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq.asyncio

from vpp.orchestrator.bus.keys import create_keypair


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    # ipc:// paths are limited to ~107 bytes; pytest's tmp_path can be longer than that.
    d = Path(tempfile.mkdtemp(prefix="vppbus-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """``server``, ``client`` (authorized) and ``rogue`` (not authorized) key pairs."""
    d = tmp_path / "keys"
    for name in ("server", "client", "rogue"):
        create_keypair(d, name)
    (d / "authorized").mkdir()
    shutil.copy(d / "client.key", d / "authorized" / "client.key")
    return d


@pytest.fixture(autouse=True, scope="module")
def _term_shared_context() -> Iterator[None]:
    # The bus objects default to the shared zmq.asyncio context; end its I/O thread after
    # the module so that no background thread outlives the tests (every socket is closed
    # by then, so term() returns at once). destroy(linger=0): a socket a test left open
    # (its leak is reported by the leak guard) must not hang the whole run in term().
    yield
    zmq.asyncio.Context.instance().destroy(linger=0)
