"""The live status block on a terminal keeps every log line visible: a small model of a
VT100 screen (the sequences StatusScreen and a log writer use: cursor moves, scroll
region, save/restore, erase line, line feeds) replays what is written to a real pty."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import termios

from vpp.orchestrator.status_screen import StatusScreen

ROWS, COLS = 12, 60
_SEQ = re.compile(r"\x1b\[(\d*)(?:;(\d*))?([HrAK])|\x1b([78])|([\r\n])|([^\x1b\r\n]+)")


class Screen:
    """Just enough of a VT100 to replay the output (1-based rows, origin mode off)."""

    def __init__(self) -> None:
        self.rows = [""] * ROWS
        self.row, self.col = 1, 1
        self.top, self.bottom = 1, ROWS
        self.saved = (1, 1)

    def feed(self, data: str) -> None:
        for m in _SEQ.finditer(data):
            a, b, cmd, esc, ctl, text = m.groups()
            if cmd == "H":
                self.row, self.col = int(a or 1), int(b or 1)
            elif cmd == "r":
                self.top, self.bottom = int(a or 1), int(b or ROWS)
                self.row, self.col = 1, 1
            elif cmd == "A":
                self.row = max(self.row - int(a or 1), 1)
            elif cmd == "K":
                self.rows[self.row - 1] = ""
            elif esc == "7":
                self.saved = (self.row, self.col)
            elif esc == "8":
                self.row, self.col = self.saved
            elif ctl == "\r":
                self.col = 1
            elif ctl == "\n":
                self.col = 1  # the pty's onlcr turns LF into CR LF
                if self.row == self.bottom:
                    region = self.rows[self.top - 1 : self.bottom]
                    self.rows[self.top - 1 : self.bottom] = [*region[1:], ""]
                elif self.row < ROWS:
                    self.row += 1
            elif text:
                line = self.rows[self.row - 1].ljust(self.col - 1)
                self.rows[self.row - 1] = line[: self.col - 1] + text
                self.col += len(text)


def _drain(fd: int) -> str:
    # Everything written so far: one read may return only part of it (the pty hands the
    # output over in pieces), so read until nothing more comes for a while.
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_log_lines_written_between_redraws_stay_above_the_block() -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    out = os.fdopen(slave, "w")
    log = os.fdopen(os.dup(slave), "w")  # another writer on the terminal, as a child is
    screen = Screen()
    try:
        log.write("before the run\n")
        log.flush()
        status = StatusScreen(out, note="logs: here")
        for k in range(8):
            status.show([f"status {k}", "bess-1 online", "bess-2 online"])
            log.write(f"log line {k}\n")
            log.flush()
        status.show(["status 8", "bess-1 online", "bess-2 online", "down: field-b"])
        status.close()
        screen.feed(_drain(master))
    finally:
        out.close()
        log.close()
        os.close(master)
    text = [r.rstrip() for r in screen.rows]
    # The last status block is whole at the bottom, the note under it...
    assert text.index("status 8") < text.index("down: field-b") < text.index("logs: here")
    # ...and the newest log lines, in order, above it: none was drawn over.
    logs = [r for r in text if r.startswith("log line")]
    assert logs == [f"log line {k}" for k in range(8 - len(logs), 8)] and len(logs) >= 5
    assert max(text.index(x) for x in logs) < text.index("status 8")
    assert not any(r.startswith("status ") and r != "status 8" for r in text)
