"""What ``mxscan pipe`` prints, and when.

Postfix's pipe(8) merges the command's stdout and stderr into one pipe, reads
it only after the command exited, keeps the first 4096 bytes and uses them as
the delivery status text: in the sender's bounce for exit 69, in Postfix's
defer log for exit 75, nowhere for exit 0. That pipe is non-blocking on our
side, so output must stay small. Hence: the status line goes first (Postfix
takes the enhanced status code from the start of the output), log lines meant
for stderr are held back and written after it, and for a bounce they are left
out so the sender does not read our scanner details.
"""

from __future__ import annotations

import logging
import os

from mxscan.logline import SafeFormatter

__all__ = ["BufferHandler", "write_fd"]

_MAX_LOG = 2000


class BufferHandler(logging.Handler):
    """Keeps formatted records until the exit status is known."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(SafeFormatter("mxscan[%(process)d]: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken record must not take the delivery down
            self.handleError(record)

    def text(self) -> str:
        joined = "".join(line + "\n" for line in self.lines)
        return joined[-_MAX_LOG:]


def write_fd(fd: int, text: str) -> None:
    """Write without Python's buffering (nothing left to flush at exit, where a
    failed flush would change the exit status) and ignore a closed or full pipe:
    the exit status is what matters to Postfix."""
    data = text.encode("utf-8", "replace")
    while data:
        try:
            written = os.write(fd, data)
        except OSError:
            return
        data = data[written:]
