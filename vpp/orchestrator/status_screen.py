"""The live status of ``vpp run`` on a terminal: a block kept at the bottom of the screen,
with the log lines of every process scrolling above it.

The block is drawn in the last rows; the rows above are made the terminal's scroll
region (DECSTBM), where the cursor is left after each redraw. Whatever any process
writes to the terminal (the children's log lines on their inherited standard error
included) lands in that region and scrolls there, so a redraw never wipes a log line.
On leaving, the region is reset and the last block stays on screen.
"""

from __future__ import annotations

import io
import os
import shutil
from typing import TextIO

__all__ = ["StatusScreen"]

_SAVE, _RESTORE = "\x1b7", "\x1b8"
_CLEAR_LINE = "\x1b[2K"


class StatusScreen:
    """A status block at the bottom of terminal ``out`` (see the module docstring);
    ``note`` is a line shown under the block (e.g. where the logs go)."""

    def __init__(self, out: TextIO, note: str = "") -> None:
        self.out = out
        self.note = note
        self._rows = 0
        """Terminal rows when the region was last set (0: not set)."""
        self._height = 0
        """Rows the block takes (the region's complement)."""

    def show(self, lines: list[str]) -> None:
        """Draw ``lines`` (one status) at the bottom of the screen."""
        if self.note:
            lines = [*lines, self.note]
        try:
            size = os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            size = shutil.get_terminal_size()
        cols, rows = size.columns, size.lines
        # Keep at least a few rows for the log lines; a taller block is cut.
        height = min(len(lines), max(rows - 3, 1))
        lines = [line[: max(cols - 1, 1)] for line in lines[:height]]
        parts: list[str] = []
        if (rows, height) != (self._rows, self._height):
            top = rows - height
            if not self._rows:
                # Room for the block below what is on screen, so that it covers nothing;
                # the cursor stays above it, where it was (setting a region homes it).
                parts.append("\n" * height + f"\x1b[{height}A{_SAVE}\x1b[1;{top}r{_RESTORE}")
            else:
                # Resized, or the block grew or shrank: blank the old block, set the new
                # region and write on from its last row.
                old = range(self._rows - self._height + 1, min(self._rows, rows) + 1)
                parts.extend(f"\x1b[{r};1H{_CLEAR_LINE}" for r in old)
                parts.append(f"\x1b[1;{top}r\x1b[{top};1H")
            self._rows, self._height = rows, height
        first = rows - height + 1
        parts.append(_SAVE)
        parts.extend(f"\x1b[{first + i};1H{_CLEAR_LINE}{line}" for i, line in enumerate(lines))
        parts.append(_RESTORE)
        self.out.write("".join(parts))
        self.out.flush()

    def close(self) -> None:
        """Give the whole screen back (the last block stays, the cursor goes below it)."""
        if self._rows:
            self.out.write(f"{_SAVE}\x1b[r{_RESTORE}\x1b[{self._rows};1H\n")
            self.out.flush()
            self._rows = self._height = 0
