"""``vpp api hash``: make the scrypt hash of a password or a new bearer token for the
``api.users`` section of a site configuration (docs/api.md)."""

from __future__ import annotations

import argparse
import getpass
import sys

__all__ = ["add_parser"]


def _cmd_hash(args: argparse.Namespace) -> int:
    from vpp.orchestrator.api.credentials import hash_secret, new_token

    if args.token:
        token = new_token()
        # The token goes to the user once; only its hash goes into the configuration.
        print(f"token (give it to the user; it is not stored): {token}", file=sys.stderr)
        print(f"token_hash: {hash_secret(token)}")
        return 0
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("vpp api hash: the two passwords differ", file=sys.stderr)
            return 2
    if not password:
        print("vpp api hash: an empty password", file=sys.stderr)
        return 2
    print(f"password_hash: {hash_secret(password)}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``api`` and its subcommands to the ``vpp`` parser's subcommands."""
    api = sub.add_parser("api", help="the HTTP API's credentials")
    api_sub = api.add_subparsers(dest="api_command", required=True)
    h = api_sub.add_parser("hash", help="hash a password (asked) or make a token, for api.users")
    h.add_argument("--token", action="store_true", help="make a new bearer token and its hash")
    h.add_argument("--stdin", action="store_true", help="read the password from standard input")
    h.set_defaults(func=_cmd_hash)
