"""The re-injection client: hands a scanned message to the next hop (Postfix's
second smtpd) over connections kept open between messages.

Why not smtplib or aiosmtplib: both take the message for DATA as one bytes
object, so a 100 MB message would be in memory; here the message is streamed
from its spool through ``DotStuffer``. The client speaks only what the next
hop (a Postfix smtpd) needs: EHLO, XFORWARD, MAIL with BODY/SMTPUTF8/SIZE and
DSN's RET/ENVID, RCPT with DSN's NOTIFY/ORCPT, DATA, RSET, QUIT; XFORWARD, MAIL
and RCPT pipelined when the next hop offers PIPELINING. The MAIL and RCPT lines
are built by ``mail_command``/``rcpt_command`` (no I/O) from what the next hop
announced in its EHLO reply.

A next hop that does not announce DSN gets the message without the DSN
parameters, as Postfix's own smtp client does it; ``Delivered.dsn_dropped``
says so, and the server logs it (``dsn=dropped``). RFC 3461 would then have the
filter send a "relayed" notice for NOTIFY=SUCCESS recipients; mxscan does not
generate notices, so such a next hop is a configuration to fix (a Postfix smtpd
announces DSN unless ``smtpd_discard_ehlo_keywords`` takes it away).

A pooled connection may have been closed by the server meanwhile: if that shows
before any message byte is sent, the delivery is retried once on a new
connection (nothing was handed over yet, so nothing can be duplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

import attrs

from mxscan.addresses import Address, UnixAddress
from mxscan.message import Message
from mxscan.service.connections import no_delay

from . import xforward
from .dots import DotStuffer

__all__ = ["Delivered", "NextHop", "NextHopError", "mail_command", "rcpt_command"]

log = logging.getLogger("mxscan.smtp")
CHUNK = 64 * 1024


class NextHopError(Exception):
    """The next hop could not be reached or answered out of protocol (-> 451)."""


class _Stale(NextHopError):
    """A pooled connection turned out closed before anything was handed over."""


@attrs.frozen
class Delivered:
    """The next hop's answers: one per recipient at RCPT, and DATA's (if reached)."""

    rcpt_replies: tuple[tuple[int, str], ...]
    data_reply: tuple[int, str] | None
    dsn_dropped: bool = False  # DSN parameters given, the next hop has no DSN


def mail_command(
    sender: str,
    *,
    features: Mapping[str, str],
    size: int,
    body_type: str | None = None,
    smtputf8: bool = False,
    dsn: Sequence[str] = (),
) -> str:
    """MAIL FROM with what the next hop announced: BODY= (8BITMIME), SMTPUTF8,
    SIZE= (the size of what will be sent, edits included), and the DSN
    parameters as received. NextHopError if SMTPUTF8 is needed but not offered
    (Postfix's rule: such a message is not downgraded, it waits)."""
    params = ""
    if body_type and "8BITMIME" in features:
        params += f" BODY={body_type}"
    if smtputf8:
        if "SMTPUTF8" not in features:
            raise NextHopError("the next hop does not offer SMTPUTF8")
        params += " SMTPUTF8"
    if "SIZE" in features:
        params += f" SIZE={size}"
    if "DSN" in features:
        params += "".join(f" {p}" for p in dsn)
    return f"MAIL FROM:<{sender}>{params}"


def rcpt_command(recipient: str, *, features: Mapping[str, str], dsn: Sequence[str] = ()) -> str:
    params = "".join(f" {p}" for p in dsn) if "DSN" in features else ""
    return f"RCPT TO:<{recipient}>{params}"


@attrs.frozen
class _Envelope:
    sender: str
    recipients: tuple[str, ...]
    body_type: str | None
    smtputf8: bool
    xforward: Mapping[str, str]
    mail_dsn: tuple[str, ...]
    rcpt_dsn: tuple[tuple[str, ...], ...]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.features: dict[str, str] = {}
        self.used = time.monotonic()

    async def reply(self, timeout: float) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            try:
                raw = await asyncio.wait_for(self.reader.readline(), timeout)
            except TimeoutError:
                raise NextHopError(f"no reply within {timeout:g}s") from None
            except (OSError, ValueError) as exc:  # ValueError: over the line limit
                raise NextHopError(f"reading a reply: {exc}") from None
            if not raw.endswith(b"\n"):
                raise NextHopError("connection closed by the next hop")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise NextHopError(f"garbage reply {line[:60]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    async def send(self, lines: Sequence[str], timeout: float) -> None:
        """Command lines in one write (more than one: PIPELINING)."""
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            raise NextHopError(f"sending {lines[0].split()[0]} took over {timeout:g}s") from None
        except OSError as exc:
            raise NextHopError(f"sending {lines[0].split()[0]}: {exc}") from None

    async def command(self, line: str, timeout: float) -> tuple[int, str]:
        await self.send([line], timeout)
        return await self.reply(timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class NextHop:
    def __init__(
        self,
        address: Address,
        *,
        helo: str = "localhost",
        timeout: float = 60.0,
        data_timeout: float = 300.0,
        idle_timeout: float = 30.0,
        pool_size: int = 32,
    ) -> None:
        self.address = address
        self.helo = helo
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.idle_timeout = idle_timeout
        self.pool_size = pool_size
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        try:
            if isinstance(self.address, UnixAddress):
                opened = asyncio.open_unix_connection(self.address.path)
            else:
                opened = asyncio.open_connection(self.address.host, self.address.port)
            reader, writer = await asyncio.wait_for(opened, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise NextHopError(f"cannot connect to {self.address}: {exc or 'timeout'}") from None
        no_delay(writer)  # the body's last chunk and the end marker: two writes, one read
        conn = _Connection(reader, writer)
        try:
            code, text = await conn.reply(self.timeout)
            if code != 220:
                raise NextHopError(f"greeting {code} {text[:80]}")
            code, text = await conn.command(f"EHLO {self.helo}", self.timeout)
            if code != 250:
                raise NextHopError(f"EHLO refused: {code} {text[:80]}")
        except BaseException:
            conn.close()
            raise
        for line in text.split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            conn.features[keyword.upper()] = params
        return conn

    def _pooled(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.used < self.idle_timeout and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        conn.used = time.monotonic()
        if len(self._idle) < self.pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    async def deliver(
        self,
        message: Message,
        sender: str,
        recipients: Sequence[str],
        *,
        body_type: str | None,
        smtputf8: bool,
        xforward_attrs: Mapping[str, str],
        all_or_nothing: bool = False,
        mail_dsn: Sequence[str] = (),
        rcpt_dsn: Sequence[Sequence[str]] | None = None,
    ) -> Delivered:
        """``all_or_nothing``: if the next hop refuses any recipient, hand over
        nothing (SMTP has one reply after DATA for all of them). ``rcpt_dsn``:
        each recipient's NOTIFY=/ORCPT= tokens, in the order of ``recipients``."""
        envelope = _Envelope(
            sender,
            tuple(recipients),
            body_type,
            smtputf8,
            xforward_attrs,
            tuple(mail_dsn),
            tuple(tuple(x) for x in rcpt_dsn) if rcpt_dsn else ((),) * len(recipients),
        )
        args = (message, envelope, all_or_nothing)
        conn = self._pooled()
        if conn is not None:
            try:
                return await self._transaction(conn, *args)
            except _Stale:
                log.debug("pooled connection to %s was closed: reconnecting", self.address)
        conn = await self._connect()
        return await self._transaction(conn, *args)

    async def _transaction(
        self,
        conn: _Connection,
        message: Message,
        env: _Envelope,
        all_or_nothing: bool,
    ) -> Delivered:
        features = conn.features
        dropped = "DSN" not in features and bool(env.mail_dsn or any(env.rcpt_dsn))
        try:
            xforward_lines = xforward.commands(env.xforward, features.get("XFORWARD", "").split())
            mail = mail_command(
                env.sender,
                features=features,
                size=message.size,
                body_type=env.body_type,
                smtputf8=env.smtputf8,
                dsn=env.mail_dsn,
            )
            rcpts = [
                rcpt_command(rcpt, features=features, dsn=params)
                for rcpt, params in zip(env.recipients, env.rcpt_dsn, strict=True)
            ]
            # PIPELINING (RFC 2920), as Postfix's smtp client does it: XFORWARD, MAIL
            # and every RCPT in one write, one wait for the replies instead of one per
            # command. DATA waits for the RCPT replies: once the next hop said 354 a
            # refused recipient could no longer stop the hand-over (all_or_nothing).
            pipelined = "PIPELINING" in features
            if pipelined:
                try:
                    await conn.send([*xforward_lines, mail, *rcpts], self.timeout)
                except NextHopError as exc:
                    raise _Stale(str(exc)) from None
            first = True
            for line in xforward_lines:
                code, text = await self._first(conn, None if pipelined else line, first)
                first = False
                if code != 250:
                    raise NextHopError(f"XFORWARD refused: {code} {text[:80]}")
            code, text = await self._first(conn, None if pipelined else mail, first)
            if code != 250:
                if pipelined:  # the RCPTs were sent: read their (503) replies
                    for _ in rcpts:
                        await conn.reply(self.timeout)
                await self._reset(conn)
                self._release(conn)  # in step again (RSET): reusable
                return Delivered(tuple((code, text) for _ in env.recipients), None, dropped)
            rcpt_replies = []
            for line in rcpts:
                if pipelined:
                    rcpt_replies.append(await conn.reply(self.timeout))
                else:
                    rcpt_replies.append(await conn.command(line, self.timeout))
            accepted = [code in (250, 251) for code, _ in rcpt_replies]
            if not any(accepted) or (all_or_nothing and not all(accepted)):
                await self._reset(conn)
                self._release(conn)  # in step again (RSET): reusable
                return Delivered(tuple(rcpt_replies), None, dropped)
            code, text = await conn.command("DATA", self.timeout)
            if code != 354:
                await self._reset(conn)
                self._release(conn)  # in step again (RSET): reusable
                return Delivered(tuple(rcpt_replies), (code, text), dropped)
            await self._send_body(conn, message)
            data_reply = await conn.reply(self.data_timeout)
        except BaseException:
            conn.close()  # failed, cancelled or crashed mid-transaction: state unknown
            raise
        self._release(conn)
        return Delivered(tuple(rcpt_replies), data_reply, dropped)

    async def _first(self, conn: _Connection, line: str | None, first: bool) -> tuple[int, str]:
        """A command's reply (``line`` None: sent already, pipelined). The first on
        a pooled connection: a failure or 421 means it was stale (nothing handed
        over yet)."""
        try:
            if line is None:
                code, text = await conn.reply(self.timeout)
            else:
                code, text = await conn.command(line, self.timeout)
        except NextHopError as exc:
            if first:
                raise _Stale(str(exc)) from None
            raise
        if first and code == 421:
            raise _Stale(text)
        return code, text

    async def _send_body(self, conn: _Connection, message: Message) -> None:
        stuffer = DotStuffer()
        writer = conn.writer
        try:
            for chunk in message.chunks(CHUNK):
                writer.write(stuffer.encode(chunk))
                await asyncio.wait_for(writer.drain(), self.timeout)
            writer.write(stuffer.end())
            await asyncio.wait_for(writer.drain(), self.timeout)
        except TimeoutError:
            raise NextHopError(f"sending the message took over {self.timeout:g}s a chunk") from None
        except OSError as exc:
            raise NextHopError(f"sending the message: {exc}") from None

    async def _reset(self, conn: _Connection) -> None:
        code, _ = await conn.command("RSET", self.timeout)
        if code != 250:
            raise NextHopError("RSET refused")

    async def aclose(self) -> None:
        for conn in self._idle:
            with contextlib.suppress(Exception):
                conn.writer.write(b"QUIT\r\n")
            conn.close()
        self._idle.clear()
