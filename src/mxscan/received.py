"""The ``Received:`` line the MTA writes for this hop, built from the envelope.

Postfix never shows a milter its own ``Received:`` line for the hop that is
delivering the message, so a content scanner behind a milter sees the relays
before it but not the client that connected. SpamAssassin places its trust
boundary (``trusted_networks``, ``ALL_TRUSTED``, DNSBL and SPF checks on the
connecting client) from ``Received:`` lines: without this one it judges the
wrong relay, or none (``NO_RELAYS``). So scanners that need the relay get this
line in front of the copy they send their daemon; it never goes into the
delivered message.

The form is Postfix's own (smtpd's ``Received:``), so that SpamAssassin's
Postfix parser reads it::

    Received: from HELO (NAME [ADDRESS])
    \t(using TLSv1.3 with cipher CIPHER (BITS/BITS bits))
    \tby HOST (Postfix) with ESMTPS id QUEUEID
    \tfor <RECIPIENT>; Wed,  2 Dec 2026 20:14:06 +0000 (UTC)
"""

from __future__ import annotations

import ipaddress
import time
from datetime import datetime

from .header import Header
from .message import Envelope

__all__ = ["mail_date", "received_header"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def mail_date(when: datetime) -> str:
    """A date as Postfix's mail_date() writes it: day of month padded with a
    space, numeric offset, and the zone's name in a comment."""
    offset = when.strftime("%z") or "+0000"
    zone = when.tzname() or "UTC"
    return (
        f"{_DAYS[when.weekday()]}, {when.day:2d} {_MONTHS[when.month - 1]} {when.year} "
        f"{when:%H:%M:%S} {offset} ({zone})"
    )


def _address(text: str) -> str:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``, as Postfix writes a client address."""
    bare = text.strip("[]")
    if bare.lower().startswith("ipv6:"):
        return f"[IPv6:{bare[5:]}]"
    try:
        version = ipaddress.ip_address(bare).version
    except ValueError:
        return f"[{bare}]"
    return f"[IPv6:{bare}]" if version == 6 else f"[{bare}]"


def _protocol(envelope: Envelope) -> str:
    if envelope.protocol:
        return envelope.protocol
    return "ESMTP" + ("S" if envelope.tls_version else "") + ("A" if envelope.auth_type else "")


def _clean(text: str) -> str:
    """One token of the line: no CR, LF or NUL (macro values come from the
    client, e.g. the HELO name), and never empty."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text).strip()
    return cleaned or "unknown"


def received_header(
    envelope: Envelope, *, when: datetime | None = None, eol: bytes = b"\r\n"
) -> Header | None:
    """This hop's ``Received:`` line, or None when the message already carries
    it (``received_in_message``) or the client's address is unknown (a line
    without it would tell a scanner nothing true)."""
    if envelope.received_in_message or not envelope.client_address:
        return None
    when = when or datetime.fromtimestamp(time.time()).astimezone()
    name = _clean(envelope.client_name or "unknown")
    helo = _clean(envelope.helo or name)
    lines = [f"from {helo} ({name} {_address(_clean(envelope.client_address))})"]
    if envelope.tls_version:
        cipher = _clean(envelope.tls_cipher or "unknown")
        bits = _clean(envelope.tls_bits or "0")
        version = _clean(envelope.tls_version)
        lines.append(f"(using {version} with cipher {cipher} ({bits}/{bits} bits))")
    receiver = _clean(envelope.receiver or "localhost")
    queue_id = _clean(envelope.queue_id or "NOQUEUE")
    lines.append(f"by {receiver} (Postfix) with {_protocol(envelope)} id {queue_id}")
    if len(envelope.recipients) == 1:
        lines.append(f"for <{_clean(envelope.recipients[0])}>; {mail_date(when)}")
    else:
        lines.append(mail_date(when))
    return Header.build("Received", "\r\n\t".join(lines), eol)
