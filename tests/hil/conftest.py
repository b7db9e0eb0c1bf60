"""Fixtures of the HIL tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hil.helpers import Dut


@pytest.fixture
def dut_factory(tmp_path: Path) -> Iterator[Callable[..., Dut]]:
    """Start a :class:`Dut` (arguments as its constructor's, after ``where``); every one
    made is stopped on teardown, whatever the test's outcome."""
    made: list[Dut] = []

    def make(*args: Any, **kwargs: Any) -> Dut:
        dut = Dut(tmp_path, *args, **kwargs)
        made.append(dut)
        dut.start()
        return dut

    yield make
    for dut in made:
        dut.stop()
