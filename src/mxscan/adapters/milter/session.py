"""Sans-I/O milter session: one MTA connection's state machine.

Bytes in (``Session.receive``), bytes out, and at end-of-message a
``mxscan.Message`` for the caller to scan; the caller then hands the
``mxscan.Result`` to ``Session.complete`` (or the exception to
``Session.fail``). No I/O and no clock here, so every protocol rule is unit-tested
without sockets.

Message bytes: Postfix sends each header as name + value, folded lines joined by a
bare LF, and the body with CRLF line endings. The message is rebuilt in SMTP wire
form, CRLF everywhere (folds, header ends, the blank separator line), which is what
Postfix itself will deliver. With ``SMFIP_HDR_LEADSPC`` the value keeps the
whitespace after the colon, so unedited header bytes round-trip exactly.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Literal

import attrs

from mxscan.adapters.milter import packets, replies
from mxscan.adapters.milter.constants import DEFAULT_MAX_PACKET, Command
from mxscan.adapters.milter.negotiate import Negotiated, Wants, negotiate, wants_for
from mxscan.adapters.milter.outcome import CannotApply, Mta, Replies, encode_result
from mxscan.adapters.milter.packets import Decoder, Event, ProtocolError
from mxscan.body import DEFAULT_SPOOL_THRESHOLD, Body, BodyBuilder
from mxscan.header import Header, InvalidHeader
from mxscan.logline import log_token
from mxscan.message import Envelope, Message
from mxscan.verdict import Result

log = logging.getLogger("mxscan.milter")

DefaultAction = Literal["tempfail", "accept", "reject"]
MtaChoice = Literal["auto", "postfix", "sendmail"]


@attrs.frozen
class Limits:
    """What one MTA connection may make the milter hold. The defaults are far above
    what Postfix or Sendmail send for real mail (a few dozen macros, a few hundred
    header fields, a few KiB of them), and low enough that a hostile peer costs a bounded amount of
    memory: past one, the connection or message gets a clear refusal (below)
    instead of the milter growing without end."""

    max_macros: int = 1000
    """Macro definitions kept per connection (a redefinition counts again)."""
    max_macro_bytes: int = 1024 * 1024
    """Bytes of macro names and values kept per connection."""
    max_headers: int = 200_000
    """Header fields per message (Postfix has no such limit; 100,000 one-line fields
    through Postfix are tested to be delivered)."""
    max_header_bytes: int = 4 * 1024 * 1024
    """Bytes of header fields per message (they are held in memory, not spooled)."""


#: Answered to every command that takes a reply once the connection's macros are
#: over the limit: the MTA retries the mail later, on a connection that is not.
MACRO_REPLY = (451, "4.7.0", "Too many milter macros on this connection, try again later")
#: A header over the limits is refused for good: resending it cannot help.
HEADER_REPLY = (552, "5.3.4", "Message header too large")

SPLIT_REPLY = (452, "4.5.3", "Recipient policy differs: send to it in a separate transaction")
SPOOL_REPLY = (451, "4.3.0", "Message could not be stored for scanning, try again later")

_COMMAND_OF: dict[type, Command] = {
    packets.Connect: Command.CONNECT,
    packets.Helo: Command.HELO,
    packets.MailFrom: Command.MAIL,
    packets.RcptTo: Command.RCPT,
    packets.Data: Command.DATA,
    packets.Header: Command.HEADER,
    packets.EndOfHeaders: Command.EOH,
    packets.Body: Command.BODY,
    packets.Unknown: Command.UNKNOWN,
}


@attrs.define
class Output:
    """What the server must do after feeding bytes: write, stream a body, scan,
    close. (Not a pipeline step, ``mxscan.Step``.)"""

    send: bytes = b""
    """Replies to write, in one write()."""
    body: Body | None = None
    """A replaced body to stream after ``send`` (``body_packets``), then close."""
    after: bytes = b""
    """Replies to write after ``body``; empty when there is no body."""
    message: Message | None = None
    """End of message reached: scan this, then call complete() or fail()."""
    closed: bool = False
    """The MTA said QUIT: close the connection after writing ``send``."""


@attrs.define
class _Transaction:
    sender: str | None = None
    mail_args: tuple[str, ...] = ()
    recipients: list[str] = attrs.field(factory=list)
    policy: str | None = None
    headers: list[Header] = attrs.field(factory=list)
    body: BodyBuilder | None = None
    macros: dict[str, str] = attrs.field(factory=dict)
    spool_error: str | None = None
    header_bytes: int = 0
    refused: bool = False
    """The header went over a limit: nothing more is kept, EOM gets HEADER_REPLY."""


class Session:
    def __init__(
        self,
        *,
        wants: Wants | None = None,
        policy_for: Callable[[str], str] | None = None,
        split_policies: bool = True,
        default_action: DefaultAction = "tempfail",
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
        max_packet: int = DEFAULT_MAX_PACKET,
        changes_body: bool = False,
        mta: MtaChoice = "auto",
        limits: Limits | None = None,
    ) -> None:
        # changes_body: the engine may replace bodies, so ask for SMFIF_CHGBODY.
        self.wants = wants or wants_for(changes_body)
        self.policy_for = policy_for
        self.split_policies = split_policies
        self.default_action = default_action
        self.spool_threshold = spool_threshold
        self.spool_dir = spool_dir
        self.mta_choice: MtaChoice = mta
        self.limits = limits or Limits()
        self._macro_bytes = 0  # of the macros kept, connection and message ones
        self._macros_refused = False
        self.negotiated: Negotiated | None = None
        self._decoder = Decoder(max_packet)
        self._pending: deque[Event] = deque()
        self._in_eom: Message | None = None
        self._conn_macros: dict[str, str] = {}
        self._client: packets.Connect | None = None
        self._helo: str | None = None
        self._tx = _Transaction()
        self.messages = 0

    @property
    def partial_packet(self) -> int | None:
        """Where the incomplete packet waiting for its rest starts in the stream (a
        byte offset: a new value is a new packet), or None."""
        return self._decoder.consumed if self._decoder.buffered else None

    # -- input ---------------------------------------------------------------

    def receive(self, data: bytes) -> Output:
        """Feed bytes read from the MTA. Raises ProtocolError on bad input."""
        self._pending.extend(self._decoder.feed(data))
        return self._run()

    def _run(self) -> Output:
        out = Output()
        sent = bytearray()
        while self._pending and self._in_eom is None and not out.closed:
            event = self._pending.popleft()
            sent += self._handle(event, out)
        out.send = bytes(sent)
        return out

    def _handle(self, event: Event, out: Output) -> bytes:
        if isinstance(event, packets.OptNeg):
            self.negotiated = negotiate(event, self.wants)
            return self.negotiated.encode()
        n = self.negotiated
        if n is None:
            raise ProtocolError(f"{type(event).__name__} before option negotiation")
        if isinstance(event, packets.Macro):
            self._store_macros(event)
            return b""
        if isinstance(event, packets.Abort):
            self._reset_message()
            return b""
        if isinstance(event, packets.Quit):
            self._reset_message()
            out.closed = True
            return b""
        if isinstance(event, packets.QuitNewConnection):
            self._reset_message()
            self._client, self._helo, self._conn_macros = None, None, {}
            self._macro_bytes, self._macros_refused = 0, False
            return b""
        if self._macros_refused and n.expects_reply(_COMMAND_OF.get(type(event), Command.BODYEOB)):
            if isinstance(event, packets.EndOfMessage):
                self.messages += 1
                self._reset_message()
            return replies.reply_code(*MACRO_REPLY)
        if isinstance(event, packets.EndOfMessage):
            if self._tx.refused:
                self.messages += 1
                self._reset_message()
                return replies.reply_code(*HEADER_REPLY)
            message: Message | None = None
            try:
                if self._tx.spool_error is None:
                    message = self._build_message()
            except OSError as exc:
                log.error("cannot spool the message body (%s): tempfailing it", exc)
            if message is None:
                # The body could not be stored (spool directory unwritable, disk
                # full): the client keeps the message and retries.
                self.messages += 1
                self._reset_message()
                return replies.reply_code(*SPOOL_REPLY)
            self._in_eom = out.message = message
            return b""
        if isinstance(event, packets.Connect):
            self._client = event
        elif isinstance(event, packets.Helo):
            self._helo = event.name
        elif isinstance(event, packets.MailFrom):
            self._reset_message(keep_macros=True)
            self._tx.sender = event.address
            self._tx.mail_args = event.args
        elif isinstance(event, packets.RcptTo):
            return self._rcpt(event, n)
        elif isinstance(event, packets.Header):
            self._header(event, n)
        elif isinstance(event, packets.Body):
            self._store_body(event.chunk)
        command = _COMMAND_OF.get(type(event))
        if command is not None and n.expects_reply(command):
            return replies.continue_()
        return b""

    def _store_macros(self, event: packets.Macro) -> None:
        if self._macros_refused:
            return
        if event.stage in (Command.CONNECT.value, Command.HELO.value):
            target = self._conn_macros
        else:
            target = self._tx.macros
        for name, value in event.macros.items():
            old = target.get(name)
            self._macro_bytes += (
                len(name) + len(value) - (0 if old is None else len(name) + len(old))
            )
            target[name] = value
        limits = self.limits
        count = len(self._conn_macros) + len(self._tx.macros)
        if count > limits.max_macros or self._macro_bytes > limits.max_macro_bytes:
            log.warning(
                "milter macros over the limit (%d, %d bytes; at most %d, %d bytes per "
                "connection): tempfailing everything on this connection",
                count,
                self._macro_bytes,
                limits.max_macros,
                limits.max_macro_bytes,
            )
            self._macros_refused = True
            self._conn_macros, self._tx.macros, self._macro_bytes = {}, {}, 0

    def _rcpt(self, event: packets.RcptTo, n: Negotiated) -> bytes:
        address = event.address
        if self.policy_for is not None and self.split_policies:
            policy = self.policy_for(address)
            if self._tx.recipients and self._tx.policy not in (None, policy):
                if n.expects_reply(Command.RCPT):
                    return replies.reply_code(*SPLIT_REPLY)
                log.warning("cannot defer %s: the MTA does not wait for RCPT replies", address)
            if self._tx.policy is None:
                self._tx.policy = policy
        self._tx.recipients.append(address)
        return replies.continue_() if n.expects_reply(Command.RCPT) else b""

    def _header(self, event: packets.Header, n: Negotiated) -> None:
        tx = self._tx
        if tx.refused:
            return
        tx.header_bytes += len(event.name) + len(event.value) + 3
        limits = self.limits
        if len(tx.headers) >= limits.max_headers or tx.header_bytes > limits.max_header_bytes:
            log.warning(
                "%s: message header over the limit (%d fields, %d bytes so far; at most %d, "
                "%d bytes): rejecting it with %d %s",
                log_token({**self._conn_macros, **tx.macros}.get("i") or "NOQUEUE"),
                len(tx.headers) + 1,
                tx.header_bytes,
                limits.max_headers,
                limits.max_header_bytes,
                HEADER_REPLY[0],
                HEADER_REPLY[1],
            )
            tx.refused = True
            tx.headers = []
            if tx.body is not None:
                tx.body.close()
                tx.body = None
            return
        value = event.value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not n.leading_space:
            # The MTA ate one space after the colon: put it back (exact unless
            # the original had none).
            value = b" " + value
        raw = event.name.encode("utf-8", "surrogateescape") + b":" + value + b"\r\n"
        try:
            self._tx.headers.append(Header(raw))
        except InvalidHeader as exc:
            raise ProtocolError(f"HEADER: {exc}") from None

    def _store_body(self, chunk: bytes) -> None:
        if self._tx.spool_error is not None or self._tx.refused:
            return
        try:
            self._body().write(chunk)
        except OSError as exc:
            log.error("cannot spool the message body (%s): the message will be tempfailed", exc)
            self._tx.spool_error = str(exc)
            if self._tx.body is not None:
                self._tx.body.close()
                self._tx.body = None

    def _body(self) -> BodyBuilder:
        if self._tx.body is None:
            self._tx.body = BodyBuilder(threshold=self.spool_threshold, spool_dir=self.spool_dir)
        return self._tx.body

    # -- end of message ------------------------------------------------------

    def _build_message(self) -> Message:
        macros = {**self._conn_macros, **self._tx.macros}
        client = self._client
        envelope = Envelope(
            sender=self._tx.sender or "",
            recipients=tuple(self._tx.recipients),  # attrs converter=tuple
            client_address=macros.get("{client_addr}") or (client.address if client else None),
            client_name=macros.get("{client_name}") or (client.hostname if client else None),
            helo=self._helo,
            queue_id=macros.get("i"),
            auth_user=macros.get("{auth_authen}"),
            macros=macros,
            receiver=macros.get("j") or None,
            tls_version=macros.get("{tls_version}") or None,
            tls_cipher=macros.get("{cipher}") or None,
            tls_bits=macros.get("{cipher_bits}") or None,
            auth_type=macros.get("{auth_type}") or None,
            # Postfix hides its own Received: line from milters.
            received_in_message=False,
        )
        body = self._body().finish()
        self._tx.body = None
        return Message(headers=tuple(self._tx.headers), body=body, envelope=envelope)

    @property
    def mta(self) -> Mta:
        """Whose header index rules apply: the option, or the MTA's ``v`` macro
        ("Postfix 3.7.11" from Postfix, "8.17.1.9" from Sendmail); Postfix when
        the MTA does not say."""
        if self.mta_choice != "auto":
            return self.mta_choice
        version = self._conn_macros.get("v", "")
        if version and not version.lower().startswith("postfix"):
            return "sendmail"
        return "postfix"

    @property
    def in_message(self) -> Message | None:
        """The message waiting for complete()/fail(), if any."""
        return self._in_eom

    def complete(self, result: Result) -> Output:
        """Map the scan result to end-of-message replies and go on with the stream.

        A replaced body is not read here: the returned output carries it, and the
        caller streams it to the MTA and closes it."""
        message = self._require_eom()
        n = self.negotiated
        assert n is not None
        replaced = result.message.body if result.body_replaced else None
        try:
            reply = encode_result(
                result,
                [h.name for h in message.headers],
                message.envelope.recipients,
                n.actions,
                n.leading_space,
                self.mta,
            )
        except CannotApply as exc:
            log.error(
                "%s: %s: not sending any edit, default action %s",
                log_token(message.envelope.queue_id or "NOQUEUE"),
                exc,
                self.default_action,
            )
            reply = Replies(self.default_reply())
        except ValueError as exc:
            log.error("cannot encode the result for the MTA (%s): default reply", exc)
            reply = Replies(self.default_reply())
        if replaced is not None and reply.body is not replaced and replaced is not message.body:
            replaced.close()  # refused or not sent: nobody else will close it
        return self._after_eom(reply)

    def fail(self, exc: BaseException | None = None) -> Output:
        """The scan could not be done: answer with the configured default action."""
        self._require_eom()
        return self._after_eom(Replies(self.default_reply()))

    def default_reply(self) -> bytes:
        if self.default_action == "accept":
            return replies.continue_()
        if self.default_action == "reject":
            return replies.reply_code(550, "5.7.1", "Message content could not be scanned")
        return replies.reply_code(451, "4.7.1", "Message cannot be scanned now, try again later")

    def _require_eom(self) -> Message:
        if self._in_eom is None:
            raise RuntimeError("no message is waiting for a result")
        return self._in_eom

    def _after_eom(self, reply: Replies) -> Output:
        message = self._in_eom
        self._in_eom = None
        if message is not None and message.body is not reply.body:
            message.close()  # (a body streamed back is closed by whoever streams it)
        self.messages += 1
        self._reset_message()
        try:
            out = self._run()
        except BaseException:
            # Bad input queued behind EOM: no output will carry the body to a writer.
            if reply.body is not None:
                reply.body.close()
            raise
        if reply.body is None:
            out.send = reply.head + reply.tail + out.send
        else:
            out.body = reply.body
            out.after = reply.tail + out.send
            out.send = reply.head
        return out

    # -- teardown ------------------------------------------------------------

    def _reset_message(self, *, keep_macros: bool = False) -> None:
        if self._tx.body is not None:
            self._tx.body.close()
        macros = self._tx.macros if keep_macros else {}
        if not keep_macros:
            self._macro_bytes -= sum(len(k) + len(v) for k, v in self._tx.macros.items())
        self._tx = _Transaction(macros=macros)

    def close(self) -> None:
        """The connection is gone: drop everything, including a half-received body."""
        self._reset_message()
        if self._in_eom is not None:
            self._in_eom.close()
            self._in_eom = None
        self._pending.clear()
