"""What goes to rspamd besides the message: the envelope and the settings, no I/O.

rspamd cannot see the SMTP session, so without these headers it would judge the
message as if it had no sender, no recipients and no client: SPF, the
envelope-vs-header rules and the per-recipient settings would all misfire. The
values come from the SMTP client (HELO, addresses), so each one is checked: a
CR or LF would let a sender add protocol headers of their own to the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mxscan import Envelope, ScannerError

__all__ = ["envelope_headers", "header_value", "settings_header"]


def header_value(name: str, value: str) -> str:
    """``value`` if it can go in an HTTP request header as it is.

    Refused (``ScannerError``, so ``on_error`` decides): CR, LF, NUL and other
    control characters (header injection), and bytes that are not valid UTF-8
    (kept by mxscan as surrogate escapes; they cannot be encoded).
    """
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
        raise ScannerError(f"refusing to send {name} {value[:60]!r} to rspamd: control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ScannerError(
            f"refusing to send {name} {value[:60]!r} to rspamd: not valid UTF-8"
        ) from None
    return value


def envelope_headers(envelope: Envelope) -> list[tuple[str, str]]:
    """rspamd's request headers for the envelope, ``Rcpt`` once per recipient.

    The null sender goes as ``<>``: an absent ``From`` would make rspamd take the
    sender from the message header, and treat a bounce as ordinary mail.
    """
    fields: list[tuple[str, str]] = [("From", envelope.sender or "<>")]
    fields += [("Rcpt", recipient) for recipient in envelope.recipients]
    optional = (
        ("Ip", envelope.client_address),
        ("Helo", envelope.helo),
        ("Hostname", envelope.client_name),
        ("User", envelope.auth_user),
        ("Queue-Id", envelope.queue_id),
    )
    fields += [(name, value) for name, value in optional if value]
    return [(name, header_value(name, value)) for name, value in fields]


def settings_header(thresholds: Mapping[str, float]) -> str | None:
    """The ``Settings`` header (JSON) that gives this request its own action
    thresholds, or None when there are none to override.

    Per request rather than in rspamd's configuration, so one rspamd serves
    every mxscan policy: ``[policy."example.net"] rspamd.reject_score = 10``
    changes the threshold for that domain's mail only.
    """
    if not thresholds:
        return None
    return json.dumps({"actions": dict(thresholds)}, separators=(",", ":"), sort_keys=True)
