"""The envelope facts of this hop, from Postfix's own top ``Received:`` line.

A pipe(8) content filter gets mail Postfix has already queued, so the message
starts with the ``Received:`` line Postfix's smtpd wrote for the client that
connected. That line is trustworthy (Postfix wrote it, and it is the first
field) and gives what pipe(8) macros may not have been configured to pass:
client address and name, HELO, this host's name, protocol and queue id.
``${client_address}`` and the other macros on the command line win over it.
Pure text work, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mxscan import Header

__all__ = ["trace_facts"]

#: smtpd's form: from HELO (NAME [ADDRESS]) ... by HOST (Postfix) with PROTO id ID
_POSTFIX = re.compile(
    r"from (?P<helo>\S+) \((?P<name>\S+) \[(?:IPv6:)?(?P<address>[0-9A-Fa-f.:]+)\]\)"
    r".*?\sby (?P<receiver>\S+) \(Postfix\) with (?P<protocol>[A-Z]+) id (?P<queue_id>\w+)",
    re.DOTALL,
)


def trace_facts(headers: Sequence[Header]) -> dict[str, str]:
    """Envelope fields read from the first header when it is Postfix's
    ``Received:`` for an SMTP client; empty for anything else (local
    submission's ``Received: by HOST (Postfix, from userid N)``, no header)."""
    if not headers or not headers[0].is_named("Received"):
        return {}
    found = _POSTFIX.match(headers[0].value)
    if found is None:
        return {}
    return {key: value for key, value in found.groupdict().items() if value}
