"""What to do with a message larger than ``max_size``.

spamc silently passes such messages unchecked and nothing says so. Here the
admin picks the outcome, and the default (accept) is visible in the verdict as
``skipped(oversize)`` and in the log.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["OnOversize", "head_at_line"]


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
