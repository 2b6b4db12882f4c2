"""The log line per message that mail admins grep next to Postfix's lines.

``QUEUEID: clamav=infected(Eicar-Test-Signature) spamassassin=skipped(oversize) action=discard
reason="..." from=<a@example.org> to=<b@example.net> nrcpt=1 size=1234 ...``
(the ``mxscan[PID]:`` prefix comes from the log handler, as with syslog).

Everything after the queue id is logfmt, and it is built for hostile input: the
sender, the MTA's macros and header text all end up here. So every value is
written bare only when it is made of safe characters, and quoted with ``\\``,
``"`` and every non-printable character escaped otherwise; keys and the queue id
are escaped to one bare token; long values are cut. No text can then add a key,
repeat one, or start a line of its own (``tests/core/test_logline.py`` parses the
line with an independent logfmt parser to hold this).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from .verdict import Action, Result

__all__ = ["format_lines", "format_result", "log_token", "setup_logging"]

#: Header text and reasons longer than this are cut (and end in ``...``): one
#: message must not be able to fill the log, and syslog daemons cut long lines
#: at their own, unmarked, limit (rsyslog: 8 KiB).
MAX_VALUE = 256
#: ``to=`` lists whole addresses up to about this many characters; ``nrcpt=``
#: always gives the count.
MAX_RECIPIENTS = 1024
_ELLIPSIS = "..."

#: A bare logfmt value: printable ASCII but space, ``"``, ``=`` and ``\``.
_BARE = re.compile(r"[!#-<>-\[\]-~]+")
#: Inside quotes: what must be escaped (the rest of the printable text stays).
_QUOTED_UNSAFE = re.compile(r'["\\]|[^\S ]|[\x00-\x1f\x7f-\x9f]')
_NAMED = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: A key or the queue id: printable ASCII but space, ``"``, ``=`` and ``\``
#: (``:`` is allowed); anything else is written as ``\\xNN`` per UTF-8 byte.
_TOKEN_UNSAFE = re.compile(r"[^!#-<>-\[\]-~]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    return _u_escape(char)


def _u_escape(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate (undecodable byte): U+FFFD
        return "\\ufffd"
    if code > 0xFFFF:  # a surrogate pair, as JSON and go-logfmt read it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _cut(text: str, limit: int = MAX_VALUE) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def log_value(text: str, limit: int = MAX_VALUE) -> str:
    """``text`` as one logfmt value: bare when safe, else quoted and escaped,
    cut to ``limit`` characters first."""
    text = _cut(text, limit)
    if _BARE.fullmatch(text):
        return text
    escaped = _QUOTED_UNSAFE.sub(_escape_char, text)
    # Printable by Python's rules: no line or paragraph separators, no bidi
    # controls or other format characters that could hide text on a terminal.
    if not escaped.isprintable():
        escaped = "".join(c if c.isprintable() else _u_escape(c) for c in escaped)
    return f'"{escaped}"'


def log_token(text: str) -> str:
    """``text`` (a queue id, a key) as one bare token that no parser splits:
    unsafe characters become ``\\xNN``, one per UTF-8 byte."""
    text = _cut(text, MAX_VALUE)

    def hexes(match: re.Match[str]) -> str:
        raw = match.group().encode("utf-8", "surrogateescape")
        return "".join(f"\\x{b:02x}" for b in raw)

    return _TOKEN_UNSAFE.sub(hexes, text) or "-"


def _address(address: str) -> str:
    """Postfix's form: ``<addr>``, ``<>`` for the null sender."""
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return f"<{address}>"


def _recipients(recipients: Iterable[str]) -> str:
    out: list[str] = []
    used = 0
    for rcpt in recipients:
        item = _address(rcpt)
        if out and used + len(item) + 1 > MAX_RECIPIENTS:
            out.append(_ELLIPSIS)
            break
        out.append(item)
        used += len(item) + 1
    return ",".join(out)


#: The line's own keys: a scanner given one of these names (possible through
#: the Python API) is logged as ``scanner.NAME`` so no key is repeated.
FIELDS = frozenset(
    ("policy", "action", "reason", "from", "to", "nrcpt", "size", "message-id", "client", "elapsed")
)


def _scanner_key(name: str) -> str:
    return f"scanner.{name}" if name in FIELDS else name


def _pairs(
    group: Result,
    *,
    size: int | None,
    elapsed: float | None,
    split: bool,
) -> list[tuple[str, str, int]]:
    """(key, value, cut limit) in line order."""
    pairs: list[tuple[str, str, int]] = []
    if split:
        pairs.append(("policy", group.policy, MAX_VALUE))
    pairs += [(_scanner_key(v.scanner), v.token, MAX_VALUE) for v in group.verdicts]
    pairs.append(("action", str(group.verdict.action), MAX_VALUE))
    if group.verdict.action is not Action.ACCEPT and group.verdict.reason:
        pairs.append(("reason", group.verdict.reason, MAX_VALUE))
    envelope = group.message.envelope
    recipients = envelope.recipients
    pairs.append(("from", _address(envelope.sender), MAX_VALUE))
    if recipients:
        pairs.append(("to", _recipients(recipients), MAX_RECIPIENTS + len(_ELLIPSIS) + 1))
    pairs.append(("nrcpt", str(len(recipients)), MAX_VALUE))
    pairs.append(("size", str(group.message.size if size is None else size), MAX_VALUE))
    message_id = group.message.get("Message-ID")
    if message_id is not None:
        pairs.append(("message-id", message_id.strip(), MAX_VALUE))
    if envelope.client_address:
        name = envelope.client_name or "unknown"
        pairs.append(("client", f"{name}[{envelope.client_address}]", MAX_VALUE))
    for verdict in group.verdicts:
        if verdict.findings:
            findings = ",".join(verdict.findings)
            pairs.append((f"{verdict.scanner}.findings", findings, MAX_VALUE))
    if elapsed is not None:
        pairs.append(("elapsed", f"{elapsed:.3f}", MAX_VALUE))
    return pairs


def format_lines(
    result: Result,
    queue_id: str | None = None,
    *,
    elapsed: float | None = None,
    size: int | None = None,
) -> list[str]:
    """The log lines for one message: one, or one per recipient policy group
    when recipients fell under different policies (as Postfix logs one line
    per delivery). ``elapsed`` is the scan's wall time in seconds; ``size`` the
    message as received (default: ``result.message``, which has the edits)."""
    queue_id = queue_id or result.message.envelope.queue_id or "NOQUEUE"
    head = log_token(queue_id) + ":"
    lines = []
    for group in result.groups:
        pairs = _pairs(group, size=size, elapsed=elapsed, split=bool(result.splits))
        fields = [f"{log_token(key)}={log_value(value, limit)}" for key, value, limit in pairs]
        lines.append(" ".join([head, *fields]))
    return lines


def format_result(
    result: Result,
    queue_id: str | None = None,
    *,
    elapsed: float | None = None,
    size: int | None = None,
) -> str:
    """The message's log line (docs: Operations, the log line), as the adapters
    write it: logfmt after the queue id, safe for any sender or MTA text. One
    line, or one per recipient policy group, joined by newlines, when the
    recipients fell under different policies. ``elapsed`` is the scan's wall
    time in seconds; ``size`` the message as received (default: the size of
    ``result.message``, which has the edits applied)."""
    return "\n".join(format_lines(result, queue_id, elapsed=elapsed, size=size))


# -- handlers ------------------------------------------------------------------

#: Where syslog listens: Linux, then FreeBSD.
SYSLOG_SOCKETS = ("/dev/log", "/var/run/log")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SafeFormatter(logging.Formatter):
    """Escapes control characters in every message, whatever logged it: a
    warning that quotes an MTA's text must not start a forged line either.
    (A traceback, appended after the message, keeps its lines.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if _CONTROL.search(record.message):
            record.message = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", record.message)
        return super().formatMessage(record)


class _TimestampFormatter(SafeFormatter):
    """RFC 3339 local time with milliseconds and UTC offset, as rsyslog writes
    high-precision timestamps: stderr redirected to a file has no other clock."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        local = time.localtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
        offset = time.strftime("%z", local)
        return f"{stamp}.{int(record.msecs):03d}{offset[:3]}:{offset[3:]}"


def setup_logging(target: str = "stderr", facility: str = "mail", level: str = "info") -> None:
    """Send the ``mxscan`` logger to stderr or syslog in ``mxscan[PID]: ...`` form.

    Under systemd (``JOURNAL_STREAM`` set) stderr lines carry no prefix: the
    journal adds a time stamp and ``mxscan[PID]:`` itself, and a second one would
    be noise. Elsewhere a stderr line starts with its time stamp.
    """
    logger = logging.getLogger("mxscan")
    logger.setLevel(level.upper())
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler: logging.Handler
    prefix = "mxscan[%(process)d]: "
    formatter: logging.Formatter
    socket_path = next((p for p in SYSLOG_SOCKETS if Path(p).exists()), None)
    if target == "syslog" and socket_path is not None:
        handler = logging.handlers.SysLogHandler(
            address=socket_path,
            facility=logging.handlers.SysLogHandler.facility_names[facility],
        )
        formatter = SafeFormatter(prefix + "%(message)s")
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            formatter = SafeFormatter("%(message)s")
        else:
            formatter = _TimestampFormatter("%(asctime)s " + prefix + "%(message)s")
        if target == "syslog":
            handler.setFormatter(formatter)
            logger.addHandler(handler)
            logger.warning("no syslog socket (%s): logging to stderr", ", ".join(SYSLOG_SOCKETS))
            logger.removeHandler(handler)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
