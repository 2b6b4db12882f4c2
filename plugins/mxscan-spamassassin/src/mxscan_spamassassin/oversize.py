"""What to do with a message larger than ``max_size``.

spamc silently passes such messages unchecked and nothing says so. Here the
admin picks the outcome, and the default (accept) is visible in the verdict as
``skipped(oversize)`` and in the log.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mxscan import Message

__all__ = ["OnOversize", "head_at_line", "truncated", "truncated_status"]


class OnOversize(enum.Enum):
    ACCEPT = "accept"
    TRUNCATE = "truncate"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


def head_at_line(chunks: Iterable[bytes], limit: int) -> bytes:
    """The first ``limit`` bytes, cut after the last complete line within them.

    Like amavisd's ``sa_mail_body_size_limit``: spamd sees whole lines, so no rule
    matches a half word. Without any line end in the window the cut is at
    ``limit``. Reads only as much of the (possibly spooled) message as needed.
    """
    parts: list[bytes] = []
    have = 0
    for chunk in chunks:
        parts.append(chunk)
        have += len(chunk)
        if have > limit:
            break
    data = b"".join(parts)
    if len(data) <= limit:
        return data
    window = data[:limit]
    end = window.rfind(b"\n")
    return window[: end + 1] if end >= 0 else window


def truncated(message: Message, limit: int) -> bytes:
    """What ``on_oversize = "truncate"`` sends: the whole header (rules on
    From, Received, Subject... need it, and a cut header would be a different
    message), then as much of the body as fits in ``limit``, cut after a whole
    line. A header alone over ``limit`` is sent whole with an empty body."""
    head = message.head_bytes()
    return head + head_at_line(message.body.chunks(), max(0, limit - len(head)))


def truncated_status(status: str) -> str:
    """``ham(1.2)`` -> ``ham(1.2,truncated)``: the log line says the score is
    the score of a part of the message."""
    if status.endswith(")"):
        return status[:-1] + ",truncated)"
    return f"{status}(truncated)"
