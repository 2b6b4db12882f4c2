"""The server side of SMTP/LMTP as Postfix's content_filter client speaks it, sans-I/O.

``receive(bytes)`` buffers input; ``events()`` yields what the I/O layer must
do: ``Send`` a reply, ``Content`` (decoded message bytes for the spool),
``MessageEnd`` (scan and answer with ``finish()``), ``Close``. Commands are
handled one by one from the buffer, so PIPELINING needs nothing special; after
``MessageEnd`` nothing more is read until ``finish()`` is called.

Why not aiosmtpd: its DATA handler collects the whole message in memory (a
list of lines) before the handler sees it, so a 100 MB message costs 100 MB+;
the content filter must spool as bytes arrive and refuse an oversized message
with 552 without holding it. Its LMTP class does not give one reply per
recipient either. The subset Postfix's smtp/lmtp client uses is small.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator

import attrs

from . import dsn
from .dots import DotUnstuffer
from .xforward import XforwardError
from .xforward import parse as parse_xforward

__all__ = [
    "Close",
    "Content",
    "MessageEnd",
    "Send",
    "Session",
    "Transaction",
]

#: Longest command line accepted (RFC 5321 says 512; XFORWARD lines from
#: Postfix stay below that, extensions add a little).
MAX_COMMAND = 2048
_PATH = re.compile(r"^(?:FROM|TO):\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE | re.DOTALL)


@attrs.define
class Transaction:
    sender: str = ""
    recipients: list[str] = attrs.field(factory=list)
    body_type: str | None = None  # "8BITMIME" / "7BIT" as the client declared
    smtputf8: bool = False
    size: int = 0  # decoded message bytes received
    xforward: dict[str, str] = attrs.field(factory=dict)
    helo: str = ""
    #: MAIL's RET=/ENVID= tokens as received, to go to the next hop unchanged.
    mail_dsn: tuple[str, ...] = ()
    #: RCPT's NOTIFY=/ORCPT= tokens as received, one tuple per recipient.
    rcpt_dsn: list[tuple[str, ...]] = attrs.field(factory=list)

    def dsn_for(self, recipients: tuple[str, ...]) -> list[tuple[str, ...]]:
        """The RCPT parameters of ``recipients`` (a recipient group of this
        transaction, in any order; an address given twice keeps each
        occurrence's own parameters, in order)."""
        queues: dict[str, list[tuple[str, ...]]] = {}
        for rcpt, params in zip(self.recipients, self.rcpt_dsn, strict=True):
            queues.setdefault(rcpt, []).append(params)
        out = []
        for rcpt in recipients:
            left = queues.get(rcpt)
            out.append(left.pop(0) if left else ())
        return out


@attrs.frozen
class Send:
    data: bytes


@attrs.frozen
class Content:
    data: bytes


@attrs.frozen
class MessageEnd:
    transaction: Transaction


@attrs.frozen
class Close:
    pass


Event = Send | Content | MessageEnd | Close


def reply(code: int, status: str, text: str) -> bytes:
    return f"{code} {status} {text}\r\n".encode("ascii", "replace")


class Session:
    """One connection. ``policy_for`` (SMTP only) keeps a transaction to one
    recipient policy: a RCPT under another policy gets ``452 4.5.3``."""

    def __init__(
        self,
        *,
        hostname: str,
        lmtp: bool,
        max_size: int,
        max_recipients: int = 1000,
        policy_for: Callable[[str], str] | None = None,
    ) -> None:
        self.hostname = hostname
        self.lmtp = lmtp
        self.max_size = max_size
        self.max_recipients = max_recipients
        self.policy_for = policy_for
        self._buf = b""
        self._greeted = False
        self._helo = ""
        self._xforward: dict[str, str] = {}
        self._tx: Transaction | None = None
        self._policy: str | None = None
        self._data: DotUnstuffer | None = None
        self._oversize = False
        self._waiting = False  # MessageEnd given, finish() not yet called
        self._closing = False
        self._skip_line = False  # discarding the rest of an over-long command

    def greeting(self) -> bytes:
        return f"220 {self.hostname} ESMTP mxscan\r\n".encode()

    @property
    def idle(self) -> bool:
        """No transaction under way: a drain may close the connection here."""
        return self._tx is None and self._data is None and not self._waiting

    def receive(self, data: bytes) -> None:
        self._buf += data

    def events(self) -> Iterator[Event]:
        while not self._waiting and not self._closing:
            if self._data is not None:
                ended = yield from self._data_events()
                if not ended:
                    return  # need more input
                continue
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_COMMAND:
                    self._buf = b""
                    self._skip_line = True
                    yield Send(reply(500, "5.5.2", "Line too long"))
                return
            line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            if self._skip_line:
                self._skip_line = False
                continue
            if len(line) > MAX_COMMAND:
                yield Send(reply(500, "5.5.2", "Line too long"))
                continue
            yield from self._command(line.rstrip(b"\r"))

    def _data_events(self) -> Generator[Event, None, bool]:
        """Decode what is buffered; True once the end of DATA was seen."""
        assert self._data is not None and self._tx is not None
        decoded, rest = self._data.feed(self._buf)
        self._buf = b""
        if decoded and not self._oversize:
            self._tx.size += len(decoded)
            if self._tx.size > self.max_size:
                self._oversize = True
            else:
                yield Content(decoded)
        if rest is None:
            return False
        self._buf = rest
        self._data = None
        if self._oversize:
            self._oversize = False
            count = len(self._tx.recipients) if self.lmtp else 1
            self._tx = None
            self._policy = None
            for _ in range(count):
                yield Send(reply(552, "5.3.4", "Message size exceeds fixed limit"))
            return True
        self._waiting = True
        yield MessageEnd(self._tx)
        return True

    def finish(self, replies: list[bytes]) -> Iterator[Event]:
        """After ``MessageEnd``: the reply (SMTP) or one per recipient (LMTP)."""
        self._waiting = False
        self._tx = None
        self._policy = None
        self._xforward = {}  # XFORWARD attributes hold for one transaction
        for data in replies:
            yield Send(data)
        yield from self.events()

    def _command(self, line: bytes) -> Iterator[Event]:
        text = line.decode("utf-8", "replace")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        if verb in ("EHLO", "HELO", "LHLO"):
            yield from self._hello(verb, arg)
        elif verb == "XFORWARD":
            yield from self._do_xforward(arg)
        elif verb == "MAIL":
            yield from self._mail(arg)
        elif verb == "RCPT":
            yield from self._rcpt(arg)
        elif verb == "DATA":
            yield from self._start_data(arg)
        elif verb == "RSET":
            self._tx, self._policy, self._xforward = None, None, {}
            yield Send(reply(250, "2.0.0", "Ok"))
        elif verb == "NOOP":
            yield Send(reply(250, "2.0.0", "Ok"))
        elif verb == "QUIT":
            self._closing = True
            yield Send(reply(221, "2.0.0", "Bye"))
            yield Close()
        elif verb in ("VRFY", "EXPN"):
            yield Send(reply(502, "5.5.1", "Command not implemented"))
        else:
            yield Send(reply(500, "5.5.2", "Error: command not recognized"))

    def _hello(self, verb: str, arg: str) -> Iterator[Event]:
        wanted = "LHLO" if self.lmtp else ("EHLO", "HELO")
        if verb not in wanted:
            yield Send(reply(500, "5.5.1", f"Error: use {'LHLO' if self.lmtp else 'EHLO'}"))
            return
        if not arg:
            yield Send(reply(501, "5.5.4", f"Syntax: {verb} hostname"))
            return
        self._greeted = True
        self._helo = arg
        self._tx, self._policy = None, None
        if verb == "HELO":
            yield Send(f"250 {self.hostname}\r\n".encode())
            return
        lines = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.max_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "DSN",
            "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE",
        ]
        out = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
        yield Send(out.encode())

    def _do_xforward(self, arg: str) -> Iterator[Event]:
        if self._tx is not None:
            yield Send(reply(503, "5.5.1", "Error: MAIL transaction in progress"))
            return
        try:
            self._xforward.update(parse_xforward(arg))
        except XforwardError as exc:
            yield Send(reply(501, "5.5.4", str(exc)))
            return
        yield Send(reply(250, "2.0.0", "Ok"))

    def _mail(self, arg: str) -> Iterator[Event]:
        if not self._greeted:
            yield Send(reply(503, "5.5.1", "Error: send EHLO first"))
            return
        if self._tx is not None:
            yield Send(reply(503, "5.5.1", "Error: nested MAIL command"))
            return
        match = _PATH.match(arg)
        if not match or not arg.upper().startswith("FROM:"):
            yield Send(reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return
        tx = Transaction(sender=match.group(1), xforward=dict(self._xforward), helo=self._helo)
        params = match.group(2).split()
        smtputf8 = any(p.upper() == "SMTPUTF8" for p in params)
        seen: set[str] = set()
        mail_dsn: list[str] = []
        for param in params:
            key, _, value = param.partition("=")
            key = key.upper()
            if key in seen:
                yield Send(reply(501, "5.5.4", f"Duplicate {key[:20]} parameter"))
                return
            seen.add(key)
            if key in dsn.MAIL_KEYS:
                try:
                    dsn.check(key, value, smtputf8=smtputf8)
                except dsn.DsnError as exc:
                    yield Send(reply(501, "5.5.4", str(exc)))
                    return
                mail_dsn.append(param)
            elif key == "SIZE" and value.isdigit():
                if int(value) > self.max_size:
                    yield Send(reply(552, "5.3.4", "Message size exceeds fixed limit"))
                    return
            elif key == "BODY" and value.upper() in ("8BITMIME", "7BIT"):
                tx.body_type = value.upper()
            elif key == "SMTPUTF8" and not value:
                tx.smtputf8 = True
            else:
                yield Send(reply(555, "5.5.4", f"Unsupported option: {param[:40]}"))
                return
        tx.mail_dsn = tuple(mail_dsn)
        self._tx = tx
        yield Send(reply(250, "2.1.0", "Ok"))

    def _rcpt(self, arg: str) -> Iterator[Event]:
        if self._tx is None:
            yield Send(reply(503, "5.5.1", "Error: need MAIL command"))
            return
        match = _PATH.match(arg)
        if not match or not arg.upper().startswith("TO:") or not match.group(1):
            yield Send(reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return
        rcpt_dsn: list[str] = []
        seen: set[str] = set()
        for param in match.group(2).split():
            key, _, value = param.partition("=")
            key = key.upper()
            if key not in dsn.RCPT_KEYS:
                yield Send(reply(555, "5.5.4", f"Unsupported option: {param[:40]}"))
                return
            if key in seen:
                yield Send(reply(501, "5.5.4", f"Duplicate {key} parameter"))
                return
            seen.add(key)
            try:
                dsn.check(key, value, smtputf8=self._tx.smtputf8)
            except dsn.DsnError as exc:
                yield Send(reply(501, "5.5.4", str(exc)))
                return
            rcpt_dsn.append(param)
        if len(self._tx.recipients) >= self.max_recipients:
            yield Send(reply(452, "4.5.3", "Error: too many recipients"))
            return
        address = match.group(1)
        if self.policy_for is not None and not self.lmtp:
            policy = self.policy_for(address)
            if self._policy is None:
                self._policy = policy
            elif policy != self._policy:
                yield Send(
                    reply(
                        452,
                        "4.5.3",
                        "Recipient policy differs: send to it in a separate transaction",
                    )
                )
                return
        self._tx.recipients.append(address)
        self._tx.rcpt_dsn.append(tuple(rcpt_dsn))
        yield Send(reply(250, "2.1.5", "Ok"))

    def _start_data(self, arg: str) -> Iterator[Event]:
        if self._tx is None:
            yield Send(reply(503, "5.5.1", "Error: need MAIL command"))
            return
        if not self._tx.recipients:
            yield Send(reply(554, "5.5.1", "Error: no valid recipients"))
            return
        if arg:
            yield Send(reply(501, "5.5.4", "Syntax: DATA"))
            return
        self._data = DotUnstuffer()
        yield Send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
