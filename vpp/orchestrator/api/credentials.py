"""Credentials of the HTTP API: scrypt hashes of passwords and tokens, and sessions.

A hash is ``scrypt$N$r$p$SALT$DIGEST`` (base64url); :func:`hash_secret` makes one and
:func:`verify_secret` checks a secret against it in constant time. Only hashes are kept
in the configuration. A login makes a random session id, kept in memory for
``ttl_s``; the dashboard holds it in an HttpOnly cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vpp.orchestrator.api.config import ApiUser

__all__ = ["Principal", "Sessions", "authenticate", "hash_secret", "new_token", "verify_secret"]

_N, _R, _P = 2**14, 8, 1
#: Sessions kept at once; the oldest go first (a login flood cannot grow memory).
MAX_SESSIONS = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """The scrypt hash of ``secret`` in the configuration's format."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, hashed: str) -> bool:
    """Whether ``secret`` matches ``hashed`` (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt":
            return False
        want = _unb64(digest)
        got = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(want))  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def new_token() -> str:
    """A random bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who a request is: the user's name and the bus identity it acts as."""

    user: str
    identity: str


def authenticate(
    users: Mapping[str, ApiUser], *, user: str | None = None, password: str | None = None,
    token: str | None = None,
) -> Principal | None:  # fmt: skip
    """The principal a password (with its user name) or a bearer token proves, if any.

    A token is tried against every user's token hash (a site has a handful of users)."""
    if token is not None:
        for name, u in users.items():
            if u.token_hash is not None and verify_secret(token, u.token_hash):
                return Principal(name, u.identity)
        return None
    if user is None or password is None:
        return None
    found = users.get(user)
    if found is None or found.password_hash is None:
        # The same work as a real check, so that timing does not tell names apart.
        verify_secret(password, _DUMMY)
        return None
    ok = verify_secret(password, found.password_hash)
    return Principal(user, found.identity) if ok else None


_DUMMY = hash_secret("not a password", salt=b"\0" * 16)


class Sessions:
    """Login sessions in memory: a random id -> principal, until ``ttl_s`` has passed."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._by_id: dict[str, tuple[Principal, float]] = {}

    def open(self, who: Principal) -> str:
        """A new session id for ``who``."""
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id, key=lambda k: self._by_id[k][1])
            del self._by_id[oldest]
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = (who, self._clock() + self.ttl_s)
        return sid

    def get(self, sid: str) -> Principal | None:
        """The session's principal, or None when unknown or expired."""
        entry = self._by_id.get(sid)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._by_id[sid]
            return None
        return entry[0]

    def close(self, sid: str) -> None:
        """End a session (logout)."""
        self._by_id.pop(sid, None)
