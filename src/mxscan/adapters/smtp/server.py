"""The asyncio layer: moves bytes between sockets, ``Session``, the spool, the engine
and the next hop.

The hand-over is exact: the reply to Postfix's end of DATA is written only when
every recipient group has its outcome, and a relayed group's ``250`` is the next
hop's ``250``. Anything that goes wrong before that (scan error, next hop down or
slow, spool write error, an exception) answers ``451``, and a connection cut
mid-DATA answers nothing: Postfix keeps the message either way.

The one window in which a message can be delivered twice is between the next
hop's ``250`` and Postfix reading ours: if mxscan dies there, Postfix retries a
message the next hop already queued. It is kept to the time of writing one
reply: every scan of a message runs before the first relay, the relays of an
LMTP message's groups run back to back, the replies go out in one write right
after the last relay, and the log line is written after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator

from mxscan.logline import format_lines, log_token
from mxscan.message import Envelope, Message
from mxscan.service.connections import Connections
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.listen import Listening
from mxscan.service.serving import start_server

from . import xforward
from .nexthop import Delivered, NextHop, NextHopError
from .outcome import Answer, Relay, plan
from .session import Close, Content, Event, MessageEnd, Send, Session, Transaction, reply

__all__ = ["SmtpServer"]

log = logging.getLogger("mxscan.smtp")
READ_SIZE = 64 * 1024
SHUTDOWN = reply(421, "4.3.2", "mxscan shutting down")
TEMPFAIL = reply(451, "4.3.0", "Error: mxscan could not process the message, try again later")


def _spool_error() -> bytes:
    return reply(451, "4.3.1", "Error: mxscan could not spool the message, try again later")


class SmtpServer:
    def __init__(
        self,
        holder: EngineHolder[EngineLike],
        nexthop: NextHop,
        *,
        lmtp: bool,
        hostname: str = "localhost",
        max_size: int = 10240000,
        max_recipients: int = 1000,
        split_policies: bool = True,
        timeout: float = 300.0,
        spool_threshold: int = 1024 * 1024,
        spool_dir: str | None = None,
    ) -> None:
        self.holder = holder
        self.nexthop = nexthop
        self.lmtp = lmtp
        self.hostname = hostname
        self.max_size = max_size
        self.max_recipients = max_recipients
        self.split_policies = split_policies
        self.timeout = timeout
        self.spool_threshold = spool_threshold
        self.spool_dir = spool_dir
        self.messages = 0
        self._servers: list[asyncio.Server] = []
        self._listening: list[Listening] = []
        self._connections: dict[asyncio.Task[None], Session] = {}
        self._tracked = Connections()
        self._stopping = False

    @property
    def protocol(self) -> str:
        return "lmtp" if self.lmtp else "smtp"

    async def serve(self, listening: Listening) -> None:
        server = await start_server(listening, self._accept)
        self._servers.append(server)
        self._listening.append(listening)
        log.info("%s listening on %s, next hop %s", self.protocol, listening.address,
                 self.nexthop.address)  # fmt: skip

    async def stop(self, timeout: float) -> None:
        """Stop accepting; idle connections get 421; transactions in flight have
        ``timeout`` seconds to finish, then are cut (Postfix retries them)."""
        self._stopping = True
        for server in self._servers:
            server.close()
        for listening in self._listening:
            listening.close()
        for task, session in list(self._connections.items()):
            if session.idle:
                task.cancel()
        pending = list(self._connections)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            if late:
                log.warning("%d transaction(s) still open after %ss: cut, Postfix retries "
                            "them", len(late), timeout)  # fmt: skip
                await self._tracked.cancel_all()
        await self.nexthop.aclose()
        await self.holder.aclose()

    # -- connections -----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        policy_for = self.holder.current.policy_for if self.split_policies else None
        session = Session(
            hostname=self.hostname,
            lmtp=self.lmtp,
            max_size=self.max_size,
            max_recipients=self.max_recipients,
            policy_for=policy_for,
        )
        self._connections[task] = session
        try:
            with self._tracked.track(writer):
                await self._serve_one(reader, writer, session)
        finally:
            self._connections.pop(task, None)

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session
    ) -> None:
        try:
            if self._stopping:
                writer.write(SHUTDOWN)
                return
            writer.write(session.greeting())
            await self._converse(reader, writer, session)
        except asyncio.CancelledError:
            if session.idle:
                with contextlib.suppress(Exception):
                    writer.write(SHUTDOWN)
        except (OSError, TimeoutError) as exc:
            log.info("%s connection closed: %s", self.protocol, exc or "timeout")
        except Exception:
            log.exception("%s connection failed", self.protocol)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 1)
            writer.close()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session
    ) -> None:
        spool: _Spool | None = None
        events: Iterator[Event] = iter(())
        while True:
            for event in events:
                match event:
                    case Send(data=data):
                        writer.write(data)
                    case Content(data=data):
                        if spool is None:
                            spool = _Spool(self.spool_threshold, self.spool_dir)
                        spool.write(data)
                    case MessageEnd(transaction=tx):
                        spool = spool or _Spool(self.spool_threshold, self.spool_dir)
                        try:
                            replies, lines = await self._message(tx, spool)
                        finally:
                            spool.close()
                            spool = None
                        # The reply first, the log after: nothing between the next
                        # hop's 250 and ours but this write.
                        writer.write(b"".join(replies))
                        try:
                            await asyncio.wait_for(writer.drain(), self.timeout)
                        finally:
                            for line in lines:
                                log.info("%s", line)
                        events = session.finish([])
                        break
                    case Close():
                        await writer.drain()
                        return
            else:
                await asyncio.wait_for(writer.drain(), self.timeout)
                if self._stopping and session.idle:
                    writer.write(SHUTDOWN)
                    return
                data = await asyncio.wait_for(reader.read(READ_SIZE), self.timeout)
                if not data:
                    if spool is not None:
                        spool.close()
                    return  # client gone (mid-DATA: Postfix retries the message)
                session.receive(data)
                events = session.events()

    # -- one message -------------------------------------------------------------

    async def _message(self, tx: Transaction, spool: _Spool) -> tuple[list[bytes], list[str]]:
        """The replies to Postfix and the log lines to write once they are sent."""
        count = len(tx.recipients) if self.lmtp else 1
        if spool.failed:
            log.error("spool write failed: %s", spool.failed)
            return [_spool_error()] * count, []
        envelope = xforward.envelope(tx.sender, tx.recipients, tx.xforward)
        log.debug("%s: xforward %s", envelope.queue_id or "NOQUEUE", tx.xforward)
        async with self.holder.use() as engine:
            try:
                message = spool.message(envelope)
            except OSError as exc:
                log.error("spool read failed: %s", exc)
                return [_spool_error()] * count, []
            size = message.size
            started = time.monotonic()
            try:
                result = await engine.scan(message)
                elapsed = time.monotonic() - started
                by_rcpt, notes = await self._hand_over(
                    tx, plan(result, tuple(tx.recipients), per_group=self.lmtp)
                )
            except Exception:
                log.exception("%s: scanning failed", log_token(envelope.queue_id or "NOQUEUE"))
                return [TEMPFAIL] * count, []
            finally:
                message.close()
        replies = [by_rcpt[r] for r in tx.recipients] if self.lmtp else [_one(by_rcpt, tx)]
        self.messages += 1
        lines = format_lines(result, envelope.queue_id, elapsed=elapsed, size=size)
        groups = result.groups if len(lines) == len(result.groups) else (result,)
        out = []
        for line, group in zip(lines, groups, strict=False):
            note = notes.get(group.policy) or notes.get(result.policy)
            out.append(f"{line} {note}" if note else line)
        return replies, out

    async def _hand_over(
        self, tx: Transaction, steps: list[Relay | Answer]
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        """Each step's replies by recipient, and the next hop's code by policy
        (``next=250``) for the log line."""
        by_rcpt: dict[str, bytes] = {}
        notes: dict[str, str] = {}
        for step in steps:
            if isinstance(step, Answer):
                by_rcpt.update(dict.fromkeys(step.recipients, step.reply))
                continue
            try:
                delivered = await self.nexthop.deliver(
                    step.message,
                    tx.sender,
                    step.recipients,
                    body_type=tx.body_type,
                    smtputf8=tx.smtputf8,
                    xforward_attrs=tx.xforward,
                    all_or_nothing=not self.lmtp,
                    mail_dsn=tx.mail_dsn,
                    rcpt_dsn=tx.dsn_for(step.recipients),
                )
            except Exception as exc:  # this group only: the others keep their replies
                if isinstance(exc, NextHopError):
                    log.warning("next hop %s: %s", self.nexthop.address, exc)
                else:
                    log.exception("relaying to %s failed", self.nexthop.address)
                notes[step.policy] = "next=unavailable"
                err = reply(451, "4.4.2", "Error: next hop unavailable, try again later")
                by_rcpt.update(dict.fromkeys(step.recipients, err))
                continue
            by_rcpt.update(_relay_replies(step.recipients, delivered))
            if delivered.data_reply is not None:
                notes[step.policy] = f"next={delivered.data_reply[0]}"
                if delivered.dsn_dropped:
                    # See nexthop: the next hop cannot take NOTIFY/ORCPT/RET/ENVID.
                    notes[step.policy] += " dsn=dropped"
        return by_rcpt, notes


def _clean(text: str) -> str:
    first = text.split("\n", 1)[0]
    return "".join(c if " " <= c <= "~" else "?" for c in first)[:400]


def _pass(code: int, text: str) -> bytes:
    """The next hop's reply, passed on: 2xx, 4xx and 5xx keep their class."""
    if not 200 <= code <= 599 or 300 <= code < 400:
        return TEMPFAIL
    return f"{code} {_clean(text)}\r\n".encode("ascii")


def _relay_replies(recipients: tuple[str, ...], delivered: Delivered) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for rcpt, (code, text) in zip(recipients, delivered.rcpt_replies, strict=False):
        if code not in (250, 251):
            out[rcpt] = _pass(code, text)
        elif delivered.data_reply is None:
            out[rcpt] = reply(451, "4.4.2", "Error: next hop refused the transaction")
        else:
            out[rcpt] = _pass(*delivered.data_reply)
    for rcpt in recipients:
        out.setdefault(rcpt, TEMPFAIL)
    return out


def _one(by_rcpt: dict[str, bytes], tx: Transaction) -> bytes:
    """SMTP has one reply after DATA. Every recipient is under one policy (the
    session's split), so the replies differ only if the next hop refused some
    recipients at RCPT; then nothing was relayed (``all_or_nothing``) and the
    message is retried, or bounced if every refusal was permanent."""
    replies = [by_rcpt[r] for r in tx.recipients]
    if len(set(replies)) == 1:
        return replies[0]
    if all(r[:1] == b"5" for r in replies):
        return replies[0]
    return next((r for r in replies if r[:1] == b"4"), TEMPFAIL)


class _Spool:
    """The message as it arrives: in memory up to the threshold, then a file."""

    def __init__(self, threshold: int, directory: str | None) -> None:
        self.threshold = threshold
        self.directory = directory
        self.file = tempfile.SpooledTemporaryFile(max_size=threshold, dir=directory)  # noqa: SIM115
        self.failed: str | None = None

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.failed = str(exc)

    def message(self, envelope: Envelope) -> Message:
        self.file.seek(0)
        return Message.from_stream(
            self.file,  # type: ignore[arg-type]
            envelope=envelope,
            spool_threshold=self.threshold,
            spool_dir=self.directory,
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
