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

from mxscan.adapters.milter import codec, replies
from mxscan.adapters.milter.codec import Decoder, Event, ProtocolError
from mxscan.adapters.milter.constants import DEFAULT_MAX_PACKET, Command
from mxscan.adapters.milter.negotiate import Negotiated, Wants, negotiate, wants_for
from mxscan.adapters.milter.outcome import Replies, encode_result
from mxscan.body import DEFAULT_SPOOL_THRESHOLD, Body, BodyBuilder
from mxscan.header import Header, InvalidHeader
from mxscan.message import Envelope, Message
from mxscan.verdict import Result

log = logging.getLogger("mxscan.milter")

DefaultAction = Literal["tempfail", "accept", "reject"]

SPLIT_REPLY = (452, "4.5.3", "Recipient policy differs: send to it in a separate transaction")
SPOOL_REPLY = (451, "4.3.0", "Message could not be stored for scanning, try again later")

_COMMAND_OF: dict[type, Command] = {
    codec.Connect: Command.CONNECT,
    codec.Helo: Command.HELO,
    codec.MailFrom: Command.MAIL,
    codec.RcptTo: Command.RCPT,
    codec.Data: Command.DATA,
    codec.Header: Command.HEADER,
    codec.EndOfHeaders: Command.EOH,
    codec.Body: Command.BODY,
    codec.Unknown: Command.UNKNOWN,
}


@attrs.define
class Step:
    """What the caller must do after feeding bytes."""

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
    ) -> None:
        # changes_body: the engine may replace bodies, so ask for SMFIF_CHGBODY.
        self.wants = wants or wants_for(changes_body)
        self.policy_for = policy_for
        self.split_policies = split_policies
        self.default_action = default_action
        self.spool_threshold = spool_threshold
        self.spool_dir = spool_dir
        self.negotiated: Negotiated | None = None
        self._decoder = Decoder(max_packet)
        self._pending: deque[Event] = deque()
        self._in_eom: Message | None = None
        self._conn_macros: dict[str, str] = {}
        self._client: codec.Connect | None = None
        self._helo: str | None = None
        self._tx = _Transaction()
        self.messages = 0

    # -- input ---------------------------------------------------------------

    def receive(self, data: bytes) -> Step:
        """Feed bytes read from the MTA. Raises ProtocolError on bad input."""
        self._pending.extend(self._decoder.feed(data))
        return self._run()

    def _run(self) -> Step:
        step = Step()
        out = bytearray()
        while self._pending and self._in_eom is None and not step.closed:
            event = self._pending.popleft()
            out += self._handle(event, step)
        step.send = bytes(out)
        return step

    def _handle(self, event: Event, step: Step) -> bytes:
        if isinstance(event, codec.OptNeg):
            self.negotiated = negotiate(event, self.wants)
            return self.negotiated.encode()
        n = self.negotiated
        if n is None:
            raise ProtocolError(f"{type(event).__name__} before option negotiation")
        if isinstance(event, codec.Macro):
            self._store_macros(event)
            return b""
        if isinstance(event, codec.Abort):
            self._reset_message()
            return b""
        if isinstance(event, codec.Quit):
            self._reset_message()
            step.closed = True
            return b""
        if isinstance(event, codec.QuitNewConnection):
            self._reset_message()
            self._client, self._helo, self._conn_macros = None, None, {}
            return b""
        if isinstance(event, codec.EndOfMessage):
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
            self._in_eom = step.message = message
            return b""
        if isinstance(event, codec.Connect):
            self._client = event
        elif isinstance(event, codec.Helo):
            self._helo = event.name
        elif isinstance(event, codec.MailFrom):
            self._reset_message(keep_macros=True)
            self._tx.sender = event.address
            self._tx.mail_args = event.args
        elif isinstance(event, codec.RcptTo):
            return self._rcpt(event, n)
        elif isinstance(event, codec.Header):
            self._header(event, n)
        elif isinstance(event, codec.Body):
            self._store_body(event.chunk)
        command = _COMMAND_OF.get(type(event))
        if command is not None and n.expects_reply(command):
            return replies.continue_()
        return b""

    def _store_macros(self, event: codec.Macro) -> None:
        if event.stage in (Command.CONNECT.value, Command.HELO.value):
            self._conn_macros.update(event.macros)
        else:
            self._tx.macros.update(event.macros)

    def _rcpt(self, event: codec.RcptTo, n: Negotiated) -> bytes:
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

    def _header(self, event: codec.Header, n: Negotiated) -> None:
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
        if self._tx.spool_error is not None:
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
    def in_message(self) -> Message | None:
        """The message waiting for complete()/fail(), if any."""
        return self._in_eom

    def complete(self, result: Result) -> Step:
        """Map the scan result to end-of-message replies and go on with the stream.

        A replaced body is not read here: the returned step carries it, and the
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
            )
        except ValueError as exc:
            log.error("cannot encode the result for the MTA (%s): default reply", exc)
            reply = Replies(self.default_reply())
        if replaced is not None and reply.body is not replaced and replaced is not message.body:
            replaced.close()  # refused or not sent: nobody else will close it
        return self._after_eom(reply)

    def fail(self, exc: BaseException | None = None) -> Step:
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

    def _after_eom(self, reply: Replies) -> Step:
        message = self._in_eom
        self._in_eom = None
        if message is not None and message.body is not reply.body:
            message.close()  # (a body streamed back is closed by whoever streams it)
        self.messages += 1
        self._reset_message()
        try:
            step = self._run()
        except BaseException:
            # Bad input queued behind EOM: no step will carry the body to a writer.
            if reply.body is not None:
                reply.body.close()
            raise
        if reply.body is None:
            step.send = reply.head + reply.tail + step.send
        else:
            step.body = reply.body
            step.after = reply.tail + step.send
            step.send = reply.head
        return step

    # -- teardown ------------------------------------------------------------

    def _reset_message(self, *, keep_macros: bool = False) -> None:
        if self._tx.body is not None:
            self._tx.body.close()
        macros = self._tx.macros if keep_macros else {}
        self._tx = _Transaction(macros=macros)

    def close(self) -> None:
        """The connection is gone: drop everything, including a half-received body."""
        self._reset_message()
        if self._in_eom is not None:
            self._in_eom.close()
            self._in_eom = None
        self._pending.clear()
