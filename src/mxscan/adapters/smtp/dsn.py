"""DSN parameters (RFC 3461): checked at MAIL/RCPT, passed on to the next hop as
they came.

Postfix's smtp/lmtp client sends ``RET=``/``ENVID=`` on MAIL and ``NOTIFY=``/
``ORCPT=`` on RCPT to a server that announces ``DSN``. A content filter that
dropped them would change what the sender asked for: ``NOTIFY=NEVER`` would
bounce again, ``NOTIFY=SUCCESS`` would never report, and ``ORCPT`` (the
recipient before aliasing) and ``ENVID`` would vanish from the notices. So the
filter announces ``DSN`` and hands each parameter to the next hop token for
token, without re-encoding: the next hop (Postfix's second smtpd) then records
exactly what the first one did.

Each value is checked against the RFC's syntax (a garbled parameter is ``501``
here, not at the next hop after the scan), and a keyword given twice is refused,
as Postfix's smtpd does.
"""

from __future__ import annotations

import re

__all__ = ["MAIL_KEYS", "RCPT_KEYS", "DsnError", "check"]

MAIL_KEYS = frozenset({"RET", "ENVID"})
RCPT_KEYS = frozenset({"NOTIFY", "ORCPT"})

# xtext (RFC 3461 section 4): "!".."~" but "+" and "=", or "+" and two upper hex digits.
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})+")
# ORCPT: addr-type ";" xtext; with SMTPUTF8, RFC 6533's utf-8 types may carry
# raw UTF-8 (checked loosely: printable, no space, no "=" or "+" outside escapes).
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_UNITEXT = re.compile(r"[^\x00-\x20\x7f+=\ufffd]+")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
MAX_ENVID = 100  # RFC 3461 section 4.4
MAX_ORCPT = 500  # RFC 3461 section 4.2: the address part


class DsnError(ValueError):
    """A DSN parameter out of syntax (-> 501)."""


def check(key: str, value: str, *, smtputf8: bool = False) -> None:
    """Raise DsnError unless ``value`` is a valid value of DSN keyword ``key``
    (upper case)."""
    if key == "RET":
        if value.upper() not in ("FULL", "HDRS"):
            raise DsnError("Bad RET parameter syntax")
    elif key == "ENVID":
        if len(value) > MAX_ENVID or not _XTEXT.fullmatch(value):
            raise DsnError("Bad ENVID parameter syntax")
    elif key == "NOTIFY":
        words = value.upper().split(",")
        if words == ["NEVER"]:
            return
        if len(set(words)) != len(words) or not set(words) <= _NOTIFY:
            raise DsnError("Bad NOTIFY parameter syntax")
    elif key == "ORCPT":
        kind, sep, address = value.partition(";")
        ok = sep and _ADDR_TYPE.fullmatch(kind) and 0 < len(address) <= MAX_ORCPT
        text = _UNITEXT if smtputf8 and kind.lower().startswith("utf-8") else _XTEXT
        if not ok or not text.fullmatch(address):
            raise DsnError("Bad ORCPT parameter syntax")
    else:  # pragma: no cover - callers pass only the four keywords
        raise DsnError(f"not a DSN parameter: {key}")
