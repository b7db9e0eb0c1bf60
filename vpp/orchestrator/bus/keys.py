"""CurveZMQ key pairs: create them (``vpp keys``) and load them for the bus.

A key pair ``NAME`` is two files in the keys directory: ``NAME.key`` (public; copy it to
the peers that must trust you) and ``NAME.key_secret`` (secret; mode 0600, never copied).
``NAME`` is the identity: a server admits the clients whose public ``NAME.key`` files are
in its keys directory and knows each as ``NAME``; what an identity may do is given by its
roles in the site configuration (:mod:`vpp.orchestrator.bus.auth`), not by holding a key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import zmq.auth

from vpp.errors import ConfigError
from vpp.validation import config_error

__all__ = ["cli", "create_keypair", "load_public", "load_secret", "site_keys"]


def create_keypair(directory: Path | str, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Create ``NAME.key`` and ``NAME.key_secret`` in ``directory``; their paths.

    The directory is created with mode 0700 when missing; the secret file gets 0600.
    An existing pair is kept unless ``force`` (replacing a key locks out its peers).
    """
    if not name or "/" in name or name.startswith("."):
        raise config_error(f"invalid key name {name!r}", "name")
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise config_error(f"key pair {name!r} already exists in {d}", "name")
    # create_certificates writes the secret with the process umask; narrow it while it does.
    old = os.umask(0o077)
    try:
        pub_file, sec_file = zmq.auth.create_certificates(str(d), name)
    finally:
        os.umask(old)
    os.chmod(sec_file, 0o600)
    # A public key may be read by anyone: it lets no one authenticate without the secret
    # half, and peers (possibly other accounts) must read it to trust this process. Only
    # the owner may write it, though: whoever replaces it picks whom the peers trust.
    os.chmod(pub_file, 0o644)
    return Path(pub_file), Path(sec_file)


def load_public(path: Path | str) -> bytes:
    """The Z85 public key of a ``.key`` (or ``.key_secret``) file."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise config_error(f"cannot read public key {path}: {exc}", "keys_dir") from None
    return public


def load_secret(path: Path | str) -> tuple[bytes, bytes]:
    """The (public, secret) Z85 keys of a ``.key_secret`` file."""
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise config_error(f"cannot read secret key {path}: {exc}", "keys_dir") from None
    if secret is None:
        raise config_error(f"{path} holds no secret key", "keys_dir")
    return public, secret


def site_keys(directory: Path | str, names: list[str], *, force: bool = False) -> list[str]:
    """A key pair for each identity ``names`` of a site; returns the names whose pair was
    created (an existing pair is kept unless ``force``). Each key is only an identity:
    what it may do is what the roles of its name allow (one field controller's key
    cannot command another, the market's cannot stop a unit)."""
    d = Path(directory)
    made = []
    for name in names:
        if force or not (d / f"{name}.key_secret").exists():
            create_keypair(d, name, force=force)
            made.append(name)
    return made


def cli(args: argparse.Namespace) -> int:
    """``vpp keys [--dir DIR] [--force] NAME`` creates a key pair and prints its paths;
    ``vpp keys --site CONFIG`` one per process of the site, all authorized."""
    try:
        if args.site is not None:
            from vpp.config import load
            from vpp.orchestrator.bus.auth import Policy
            from vpp.orchestrator.bus.topology import identities

            site = load(args.site)
            fields = [f.id for f in site.field]
            policy = Policy.build(site.security, fields)
            names = [*identities(fields), *(n for n in policy.identities if n not in
                                             identities(fields))]  # fmt: skip
            made = site_keys(args.dir, names, force=args.force)
            kept = [n for n in names if n not in made]
            print(f"keys in {args.dir}: made {made or 'none'}, kept {kept or 'none'}; "
                  "each may do what its roles allow (security in the site configuration)")
            return 0
        if not args.name:
            raise config_error("give a key NAME or --site CONFIG", "name")
        public, secret = create_keypair(args.dir, args.name, force=args.force)
    except ConfigError as exc:
        print(f"vpp keys: {exc}", file=sys.stderr)
        return 1
    print(f"public key: {public}\nsecret key: {secret} (mode 0600; keep it on this host)")
    return 0
