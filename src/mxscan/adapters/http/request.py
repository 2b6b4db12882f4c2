"""rspamd's request headers -> the mxscan envelope (sans-I/O).

rspamd passes the SMTP envelope in HTTP request headers (``From``, ``Rcpt``
repeated, ``Ip``, ``Helo``...). They become an ``Envelope``; anything that
could smuggle a line break into a log line or a header is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mxscan.message import Envelope

__all__ = ["BadRequest", "ScanRequest", "parse_scan_request"]


class BadRequest(ValueError):
    """The request cannot be scanned as sent: the client gets 400 and this text."""


@attrs.frozen
class ScanRequest:
    envelope: Envelope
    #: ``Settings-ID``: the name of the mxscan policy to scan with (None: route by
    #: recipient domain, as the milter does).
    policy: str | None = None
    password: str | None = None


#: Header name (lower case) -> Envelope field. ``Rcpt`` may repeat.
_SINGLE = {
    b"from": "sender",
    b"ip": "client_address",
    b"hostname": "client_name",
    b"helo": "helo",
    b"queue-id": "queue_id",
    b"user": "auth_user",
}


def _text(name: bytes, value: bytes) -> str:
    if any(c in value for c in b"\r\n\0"):
        raise BadRequest(f"header {name.decode('ascii', 'replace')}: CR, LF or NUL in the value")
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest(f"header {name.decode('ascii', 'replace')}: not UTF-8") from None


def _address(text: str) -> str:
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def parse_scan_request(headers: Iterable[tuple[bytes, bytes]]) -> ScanRequest:
    """``headers`` as h11 gives them: lower-case names, raw values."""
    fields: dict[str, str] = {}
    recipients: list[str] = []
    policy: str | None = None
    password: str | None = None
    for name, raw in headers:
        name = name.lower()
        if name == b"rcpt":
            recipients.extend(_address(r) for r in _text(name, raw).split(",") if r.strip())
        elif name in _SINGLE:
            if _SINGLE[name] in fields:
                raise BadRequest(f"header {name.decode()} given twice")
            value = _text(name, raw)
            fields[_SINGLE[name]] = _address(value) if name == b"from" else value
        elif name == b"settings-id":
            policy = _text(name, raw).lower() or None
        elif name == b"password":
            password = _text(name, raw)
    envelope = Envelope(
        sender=fields.get("sender", ""),
        recipients=tuple(recipients),
        client_address=fields.get("client_address") or None,
        client_name=fields.get("client_name") or None,
        helo=fields.get("helo") or None,
        queue_id=fields.get("queue_id") or None,
        auth_user=fields.get("auth_user") or None,
    )
    return ScanRequest(envelope=envelope, policy=policy, password=password)
