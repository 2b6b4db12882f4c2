"""Test messages that carry a token, and the count of their copies at a sink.

A test that sends many messages through a real MTA finds each again by its token
(in Subject and ``Message-ID: <TOKEN@example.org>``), so "delivered exactly once"
is a count, not a guess. The scanning daemons' own test messages (GTUBE, EICAR,
ham that spamd scores low) are in ``tests.support.daemons``.
"""

from __future__ import annotations

from email.utils import formatdate

from tests.support.sink import SMTPSink

PLAIN = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
LUNCH = b"Hi Bob,\r\n\r\nShall we meet for lunch at noon tomorrow, as usual?\r\n\r\nAlice\r\n"


def tagged(token: str, body: bytes = b"Nothing to see here.\r\n") -> bytes:
    """A plain-text message with ``token`` as its Subject and in its Message-ID."""
    return (
        b"From: Alice <alice@example.org>\r\nTo: rcpt@example.com\r\n"
        + f"Subject: {token}\r\nDate: {formatdate()}\r\nMessage-ID: <{token}@example.org>\r\n".encode()
        + PLAIN
        + b"\r\n"
        + body
    )


def lunch(token: str) -> bytes:
    """An ordinary message spamd scores as ham, ``token`` in Subject and Message-ID."""
    return (
        b"From: Alice <alice@example.org>\r\nTo: Bob <rcpt@example.com>\r\n"
        + f"Subject: Lunch {token}\r\nDate: {formatdate()}\r\n".encode()
        + f"Message-ID: <{token}@example.org>\r\n".encode()
        + PLAIN
        + b"\r\n"
        + LUNCH
    )


def copies(sink: SMTPSink, token: str) -> int:
    """How many deliveries at ``sink`` carry the Message-ID of ``tagged(token)``."""
    return sum(f"<{token}@".encode() in d.data for d in sink.deliveries)


def split_first_header(data: bytes) -> tuple[bytes, bytes]:
    """(first header field with its folds, the rest): the Received: field an MTA
    put first, and the bytes after it."""
    end = 0
    while True:
        nl = data.index(b"\r\n", end) + 2
        end = nl
        if data[end : end + 1] not in (b" ", b"\t"):
            return data[:end], data[end:]
