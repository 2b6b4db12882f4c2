"""SMTP DATA transparency (RFC 5321 4.5.2), both ways, streaming.

Both directions work on chunks of any size and split anywhere, so a 100 MB
message never has to be in memory, and they search with ``bytes.find`` for
``"\\n."`` rather than walking lines in Python: a body without leading dots costs
one C-level scan.

Line starts are taken after every LF (what Postfix's smtpd does); the end of
DATA is only ``CRLF . CRLF``, so a bare-LF ``"\\n.\\n"`` cannot end a message
early (the SMTP smuggling pattern).
"""

from __future__ import annotations

__all__ = ["DotStuffer", "DotUnstuffer"]


class DotStuffer:
    """Message bytes -> DATA bytes: a dot at a line start is doubled."""

    def __init__(self) -> None:
        self._line_start = True
        self._tail = b"\r\n"  # an empty message ends "as if" after a CRLF

    def encode(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = chunk.replace(b"\n.", b"\n..")
        if self._line_start and chunk[:1] == b".":
            out = b"." + out
        self._line_start = chunk[-1:] == b"\n"
        self._tail = (self._tail + chunk)[-2:]
        return out

    def end(self) -> bytes:
        """The end-of-data marker; a message that does not end in CRLF gets one
        (SMTP cannot carry a message without a final line end)."""
        return b".\r\n" if self._tail == b"\r\n" else b"\r\n.\r\n"


class DotUnstuffer:
    """DATA bytes -> message bytes, until ``CRLF . CRLF``.

    ``feed()`` returns the message bytes it could decode and the input bytes
    that follow the end marker (the next commands), or ``None`` while the
    message goes on.
    """

    def __init__(self) -> None:
        self._line_start = True
        self._after_crlf = True
        self._pending = b""  # a line start that needs more bytes to decide
        self._last = b"\n"  # the byte before ``buf`` (for a CR split from its LF)

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        buf = self._pending + data
        self._pending = b""
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if self._line_start:
                if buf[pos : pos + 1] == b".":
                    if n - pos < 3:
                        self._pending = buf[pos:]
                        return b"".join(out), None
                    if buf[pos : pos + 3] == b".\r\n" and self._after_crlf:
                        return b"".join(out), buf[pos + 3 :]
                    pos += 1  # the stuffed dot
                self._line_start = False
            nl = buf.find(b"\n.", pos)
            if nl < 0:
                out.append(buf[pos:])
                self._set_end(buf, n)
                return b"".join(out), None
            out.append(buf[pos : nl + 1])
            self._after_crlf = (buf[nl - 1 : nl] if nl > 0 else self._last) == b"\r"
            self._line_start = True
            pos = nl + 1
        return b"".join(out), None

    def _set_end(self, buf: bytes, n: int) -> None:
        if buf[n - 1 : n] == b"\n":
            self._line_start = True
            self._after_crlf = (buf[n - 2 : n - 1] if n > 1 else self._last) == b"\r"
        else:
            self._line_start = False
        self._last = buf[n - 1 : n]
