"""Sans-I/O milter encoder: replies and end-of-message actions -> bytes for the MTA.

Each function returns one complete packet; the server concatenates a batch and writes it
once (one ``write()`` per batch avoids the Nagle + delayed-ACK stall on TCP).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from mxscan.adapters.milter.constants import MacroStage, Reply
from mxscan.verdict import ENHANCED_STATUS


class EncodeError(ValueError):
    """A reply that the MTA would reject or misparse (e.g. a 2xx reply, a NUL byte)."""


def packet(code: Reply, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + code.value + data


def _cstr(value: str | bytes, what: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if b"\0" in raw:
        raise EncodeError(f"{what} contains a NUL byte")
    return raw + b"\0"


def continue_() -> bytes:
    return packet(Reply.CONTINUE)


def accept() -> bytes:
    return packet(Reply.ACCEPT)


def reject() -> bytes:
    return packet(Reply.REJECT)


def tempfail() -> bytes:
    return packet(Reply.TEMPFAIL)


def discard() -> bytes:
    return packet(Reply.DISCARD)


def progress() -> bytes:
    return packet(Reply.PROGRESS)


def skip() -> bytes:
    return packet(Reply.SKIP)


def reply_code(code: int, status: str, text: str | Iterable[str]) -> bytes:
    """SMFIR_REPLYCODE: a custom 4xx/5xx reply, multi-line when ``text`` has several lines.

    Postfix requires the enhanced status (it checks that byte 4 repeats the code's
    first digit) and un-doubles ``%`` as Sendmail would for a format string, so a
    literal ``%`` must be sent doubled.
    """
    if not 400 <= code <= 599:
        raise EncodeError(f"milter replies must be 4xx or 5xx, not {code}")
    if not status:
        status = f"{code // 100}.7.1"
    if not ENHANCED_STATUS.fullmatch(status) or status[0] != str(code)[0]:
        raise EncodeError(f"enhanced status {status!r} does not match reply code {code}")
    lines = text.splitlines() if isinstance(text, str) else list(text)
    lines = lines or [""]
    out = []
    for i, line in enumerate(lines):
        if "\r" in line or "\n" in line:
            raise EncodeError("reply text line contains CR or LF")
        sep = " " if i == len(lines) - 1 else "-"
        out.append(f"{code}{sep}{status} {line.replace('%', '%%')}".rstrip(" "))
    return packet(Reply.REPLYCODE, _cstr("\r\n".join(out), "reply text"))


def _field(name: str, value: str | bytes) -> bytes:
    return _cstr(name, "header name") + _cstr(value, "header value")


def add_header(name: str, value: str | bytes) -> bytes:
    return packet(Reply.ADDHEADER, _field(name, value))


def insert_header(index: int, name: str, value: str | bytes) -> bytes:
    """SMFIR_INSHEADER; Postfix counts ``index`` with its own Received: header at 0."""
    if index < 0:
        raise EncodeError("insert index must be >= 0")
    return packet(Reply.INSHEADER, struct.pack("!I", index) + _field(name, value))


def change_header(index: int, name: str, value: str | bytes) -> bytes:
    """SMFIR_CHGHEADER; ``index`` is 1-based per name, an empty value deletes."""
    if index < 1:
        raise EncodeError("change index is 1-based")
    return packet(Reply.CHGHEADER, struct.pack("!I", index) + _field(name, value))


def delete_header(index: int, name: str) -> bytes:
    return change_header(index, name, b"")


def add_rcpt(address: str) -> bytes:
    return packet(Reply.ADDRCPT, _cstr(address, "recipient"))


def del_rcpt(address: str) -> bytes:
    return packet(Reply.DELRCPT, _cstr(address, "recipient"))


def quarantine(reason: str) -> bytes:
    # libmilter refuses an empty reason; Postfix logs it in the hold record.
    return packet(Reply.QUARANTINE, _cstr(reason or "quarantined", "quarantine reason"))


def replace_body(chunk: bytes) -> bytes:
    return packet(Reply.REPLBODY, chunk)


def optneg(
    version: int,
    actions: int,
    protocol: int,
    macros: Mapping[MacroStage, Iterable[str]] | None = None,
) -> bytes:
    """The negotiation reply, followed by the per-stage macro lists we ask for."""
    data = struct.pack("!III", version, int(actions), int(protocol))
    for stage, names in (macros or {}).items():
        data += struct.pack("!I", int(stage)) + _cstr(" ".join(names), "macro list")
    return packet(Reply.OPTNEG, data)
