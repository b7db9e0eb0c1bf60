"""Where the leak guard's own test (tests/test_leak_guard.py) keeps what its inner tests
leak on purpose, so that it can clean up after them."""

from __future__ import annotations

from typing import Any

JUNK: dict[str, Any] = {}
