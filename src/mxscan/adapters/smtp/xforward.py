"""Postfix's XFORWARD (XFORWARD_README): the original client's facts, carried
from Postfix to the filter and from the filter to the re-injection smtpd.

Values travel xtext-encoded (RFC 3461: ``+XX`` for ``+``, ``=``, controls and
non-ASCII). They are kept encoded as received and passed on unchanged, and
decoded only to fill the ``Envelope``; ``[UNAVAILABLE]`` / ``[TEMPUNAVAIL]`` mean
Postfix does not know the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from mxscan.message import Envelope

__all__ = ["ATTRIBUTES", "XforwardError", "commands", "envelope", "parse", "xtext_decode"]

#: What mxscan accepts and passes on, in Postfix's order.
ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
UNKNOWN = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_XTEXT = re.compile(rb"\+([0-9A-F]{2})")
_VALUE = re.compile(r"[\x21-\x7e]{1,255}")
#: Postfix splits XFORWARD so each command line stays under 512 octets.
MAX_LINE = 500


class XforwardError(ValueError):
    """A malformed XFORWARD command (answered 501)."""


def parse(argument: str) -> dict[str, str]:
    """``NAME=a ADDR=b`` -> ``{"NAME": "a", "ADDR": "b"}`` (values still xtext)."""
    attrs: dict[str, str] = {}
    for item in argument.split():
        name, eq, value = item.partition("=")
        name = name.upper()
        if not eq or name not in ATTRIBUTES:
            raise XforwardError(f"bad XFORWARD attribute {item[:40]!r}")
        if not _VALUE.fullmatch(value):
            raise XforwardError(f"bad XFORWARD value for {name}")
        attrs[name] = value
    if not attrs:
        raise XforwardError("XFORWARD needs name=value")
    return attrs


def xtext_decode(value: str) -> str:
    raw = _XTEXT.sub(lambda m: bytes([int(m.group(1), 16)]), value.encode("ascii"))
    return raw.decode("utf-8", "replace")


def _known(attrs: Mapping[str, str], name: str) -> str | None:
    value = attrs.get(name)
    if value is None or value in UNKNOWN:
        return None
    return xtext_decode(value)


def envelope(sender: str, recipients: Iterable[str], attrs: Mapping[str, str]) -> Envelope:
    """The envelope with the client fields that ``skip_networks`` and SpamAssassin's
    synthetic Received line read; every known attribute is also a macro."""
    address = _known(attrs, "ADDR")
    if address and address.upper().startswith("IPV6:"):
        address = address[5:]
    macros = {f"xforward_{k.lower()}": v for k in ATTRIBUTES if (v := _known(attrs, k))}
    return Envelope(
        sender=sender,
        recipients=tuple(recipients),
        client_address=address,
        client_name=_known(attrs, "NAME"),
        helo=_known(attrs, "HELO"),
        queue_id=_known(attrs, "IDENT"),
        macros=macros,
        protocol=_known(attrs, "PROTO"),
        # Postfix's cleanup wrote its Received: line for the client's hop before
        # queueing: a scanner that needs it finds it in the message.
        received_in_message=True,
    )


def commands(attrs: Mapping[str, str], offered: Iterable[str]) -> list[str]:
    """The XFORWARD command lines for a next hop that offers ``offered``."""
    allowed = {a.upper() for a in offered}
    if not attrs:
        return []
    # As Postfix's own client does: every offered attribute, [UNAVAILABLE] when
    # unknown, so the next hop never mixes forwarded facts with its own.
    items = [f"{k}={attrs.get(k, UNKNOWN[0])}" for k in ATTRIBUTES if k in allowed]
    lines: list[str] = []
    line = "XFORWARD"
    for item in items:
        if len(line) + 1 + len(item) > MAX_LINE and line != "XFORWARD":
            lines.append(line)
            line = "XFORWARD"
        line += " " + item
    if line != "XFORWARD":
        lines.append(line)
    return lines
