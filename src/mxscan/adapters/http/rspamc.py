"""rspamd's older line protocol, ``CHECK RSPAMC/1.3`` (sans-I/O): what Exim's
``spamd_address = HOST PORT variant=rspamd`` speaks.

The request is a method line, ``Name: value`` lines, a blank line and
``Content-length`` bytes of message; the answer is a status line, a
``Metric: default; True|False; SCORE / THRESHOLD / REJECT_SCORE`` line, an
``Action:`` line and symbol lines, and the server closes the connection (Exim
reads until then). Exim parses the first two lines with ``sscanf`` and takes
``$spam_action`` from the third, so their shape is fixed.
"""

from __future__ import annotations

import re
from typing import Any

from .request import BadRequest

__all__ = ["REQUEST_LINE", "LegacyHead", "legacy_reply", "parse_legacy_head"]

#: ``CHECK RSPAMC/1.3`` (or SYMBOLS, and SPAMC/1.x as spamc sends it).
REQUEST_LINE = re.compile(
    rb"(CHECK|SYMBOLS|REPORT|REPORT_IFSPAM|PROCESS) (R?SPAMC)/(\d+\.\d+)\r?\n"
)


class LegacyHead:
    def __init__(self, command: bytes, headers: list[tuple[bytes, bytes]], length: int) -> None:
        self.command = command
        self.headers = headers
        self.length = length


def parse_legacy_head(data: bytes, *, max_headers: int) -> tuple[LegacyHead, int] | None:
    """The head and where the message starts, or None while the blank line is missing."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    first, *lines = data[:end].split(b"\r\n")
    match = REQUEST_LINE.fullmatch(first + b"\r\n")
    if match is None:
        raise BadRequest("not an RSPAMC request line")
    if len(lines) > max_headers:
        raise BadRequest(f"more than {max_headers} request headers")
    headers: list[tuple[bytes, bytes]] = []
    length = None
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or not name.strip() == name:
            raise BadRequest("a request header line is not 'Name: value'")
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            if not value.isdigit():
                raise BadRequest("Content-length is not a number")
            length = int(value)
        headers.append((name, value))
    if length is None:
        raise BadRequest("Content-length is missing")
    return LegacyHead(match[1], headers, length), end + 4


def legacy_reply(answer: dict[str, Any]) -> bytes:
    """The rspamd JSON answer (``rspamd.rspamd_answer``) in the line protocol."""
    action = answer["action"]
    spam = "True" if action not in ("no action", "greylist") else "False"
    score, required = answer["score"], answer["required_score"]
    lines = [
        "RSPAMD/1.3 0 EX_OK",
        f"Metric: default; {spam}; {score:.2f} / {required:.2f} / {required:.2f}",
        f"Action: {action}",
    ]
    for symbol in answer["symbols"].values():
        options = ",".join(symbol.get("options", ()))
        lines.append(
            f"Symbol: {symbol['name']}({symbol['score']:.2f})" + (f"; {options}" if options else "")
        )
    if "message-id" in answer:
        lines.append(f"Message-ID: {answer['message-id']}")
    smtp = answer.get("messages", {}).get("smtp_message")
    if smtp:
        lines.append(f"Message: {smtp}")
    if "subject" in answer:
        lines.append(f"Subject: {answer['subject']}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def legacy_error(text: str) -> bytes:
    """An answer Exim cannot parse on purpose: it defers (4xx) and logs it."""
    return f"RSPAMD/1.3 400 EX_ERROR\r\nError: {text}\r\n\r\n".encode("utf-8", "replace")
