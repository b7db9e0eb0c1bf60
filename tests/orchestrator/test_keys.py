"""Curve key pairs: file modes, loading, refusing to overwrite, and ``vpp keys``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

from vpp.cli import main
from vpp.errors import ConfigError
from vpp.orchestrator.bus.keys import create_keypair, load_public, load_secret


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_keypair_files_modes_and_contents(tmp_path: Path) -> None:
    public, secret = create_keypair(tmp_path / "k", "campus")
    assert (public.name, secret.name) == ("campus.key", "campus.key_secret")
    assert _mode(secret) == 0o600 and _mode(public) == 0o644 and _mode(tmp_path / "k") == 0o700
    pub, sec = load_secret(secret)
    assert load_public(public) == pub and len(pub) == len(sec) == 40
    # The pair is a real Curve pair: the public key derives from the secret one.
    assert zmq.curve_public(sec) == pub
    assert b"secret" not in public.read_bytes()


def test_existing_pair_is_kept_unless_forced(tmp_path: Path) -> None:
    public, _ = create_keypair(tmp_path, "a")
    first = load_public(public)
    with pytest.raises(ConfigError) as info:
        create_keypair(tmp_path, "a")
    assert info.value.field == "name" and "already exists" in str(info.value)
    create_keypair(tmp_path, "a", force=True)
    assert load_public(public) != first


@pytest.mark.parametrize("name", ["", "../x", ".hidden"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError):
        create_keypair(tmp_path, name)


def test_loading_a_public_file_as_secret_fails(tmp_path: Path) -> None:
    public, _ = create_keypair(tmp_path, "a")
    with pytest.raises(ConfigError, match="no secret key"):
        load_secret(public)
    with pytest.raises(ConfigError, match="cannot read"):
        load_public(tmp_path / "missing.key")


def test_cli_creates_a_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "keys"
    assert main(["keys", "--dir", str(d), "field1"]) == 0
    assert _mode(d / "field1.key_secret") == 0o600
    assert str(d / "field1.key") in capsys.readouterr().out
    assert main(["keys", "--dir", str(d), "field1"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_site_keys_are_no_wider_under_any_umask(tmp_path: Path) -> None:
    import os

    from vpp.orchestrator.bus.keys import site_keys

    d = tmp_path / "keys"
    old = os.umask(0)  # the umask that would leave everything world-writable
    try:
        site_keys(d, ["field-a", "campus"])
    finally:
        os.umask(old)
    assert _mode(d) == 0o700
    for name in ("field-a", "campus"):
        assert _mode(d / f"{name}.key_secret") == 0o600
        assert _mode(d / f"{name}.key") == 0o644
