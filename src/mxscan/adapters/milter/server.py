"""The thin asyncio layer around ``Session``: sockets, keepalives, drain, reload.

Everything protocol-shaped is in the sans-I/O session; this module only moves bytes,
runs the engine at end-of-message (sending SMFIR_PROGRESS while it runs so Postfix's
``milter_content_timeout`` never fires during a slow scan), and owns the listening
socket's lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from typing import Any

from mxscan.adapters.milter import replies
from mxscan.adapters.milter.constants import Command
from mxscan.adapters.milter.negotiate import Wants, negotiate
from mxscan.adapters.milter.outcome import body_packets
from mxscan.adapters.milter.packets import Decoder, Macro, OptNeg, ProtocolError
from mxscan.adapters.milter.session import DefaultAction, Limits, MtaChoice, Output, Session
from mxscan.addresses import Address
from mxscan.body import DEFAULT_SPOOL_THRESHOLD
from mxscan.logline import format_lines, log_token
from mxscan.message import Message
from mxscan.pipeline import THREAD_EDITS  # also the bound for turning edits into replies
from mxscan.service.connections import Connections
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.listen import Listening, SocketPermissions, bind
from mxscan.service.serving import Listeners

log = logging.getLogger("mxscan.milter")

READ_SIZE = 256 * 1024

#: Sent before closing a connection that went quiet: the MTA reads it as the answer
#: to its next command and retries the mail, instead of finding a dead socket.
TIMEOUT_REPLY = (451, "4.4.2", "Milter connection timed out, try again later")
#: Past --max-connections, each new connection is negotiated and its first command
#: answered with a tempfail (Postfix then tempfails that SMTP session), rather than
#: left waiting in the listen queue until Postfix's own timeout.
BUSY_TIMEOUT = 10.0


class _TimedOut(Exception):
    """The MTA sent nothing (or not a whole packet) in time."""


class _HungUp(Exception):
    """The MTA closed the connection while its message was being scanned."""


class MilterServer:
    def __init__(
        self,
        engine: EngineLike,
        *,
        progress_interval: float = 10.0,
        split_policies: bool = True,
        default_action: DefaultAction = "tempfail",
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
        socket_mode: int = 0o660,
        socket_owner: str | None = None,
        socket_group: str | None = None,
        limits: Limits | None = None,
        max_connections: int = 1000,
        idle_timeout: float = 600.0,
        packet_timeout: float = 60.0,
        backlog: int | None = None,
        mta: MtaChoice = "auto",
    ) -> None:
        self.holder: EngineHolder[EngineLike] = EngineHolder(engine)
        self.limits = limits or Limits()
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.packet_timeout = packet_timeout
        self.backlog = socket.SOMAXCONN if backlog is None else backlog
        self.mta: MtaChoice = mta
        self.progress_interval = progress_interval
        self.split_policies = split_policies
        self.default_action: DefaultAction = default_action
        self.spool_threshold = spool_threshold
        self.spool_dir = spool_dir
        self.permissions = SocketPermissions(socket_mode, socket_owner, socket_group)
        self._listeners = Listeners()
        self._tracked = Connections()
        self.messages = 0

    # -- listeners -----------------------------------------------------------

    async def listen(self, address: Address) -> None:
        """Bind ``address`` (``mxscan.service.listen``: stale sockets, modes,
        owners) and serve on it; a ``ListenError`` says why not."""
        await self.serve(bind(address, self.permissions, self.backlog))

    async def serve(self, listening: Listening) -> None:
        """Serve on a socket already bound (``service.serving.bind_and_serve``)."""
        await self._listeners.start(listening, self._accept, limit=READ_SIZE)
        log.info("milter listening on %s", listening.address)

    @property
    def sockets(self) -> list[socket.socket]:
        return self._listeners.sockets

    # -- engine ----------------------------------------------------------------

    @property
    def engine(self) -> EngineLike:
        """The engine new messages are scanned with."""
        return self.holder.current

    @engine.setter
    def engine(self, engine: EngineLike) -> None:
        self.replace_engine(engine)

    def replace_engine(self, engine: EngineLike) -> None:
        """SIGHUP: new messages use ``engine``; the old one closes once idle."""
        self.holder.replace(engine)

    # What the tests watch: the connections served, the scans running.
    @property
    def _connections(self) -> frozenset[asyncio.Task[object]]:
        return self._tracked.tasks

    @property
    def _scans(self) -> int:
        return self.holder.active

    # -- connections -----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._tracked.track(writer):
            if len(self._tracked) > self.max_connections:
                try:
                    await self._refuse_busy(reader, writer)
                except (TimeoutError, ProtocolError, ConnectionError):
                    pass
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
                return
            await self._converse(reader, writer)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        engine = self.holder.current
        session = Session(
            policy_for=lambda rcpt: self.holder.current.policy_for(rcpt),
            split_policies=self.split_policies,
            default_action=self.default_action,
            spool_threshold=self.spool_threshold,
            spool_dir=self.spool_dir,
            # Engines without the property (test fakes, older embedders) never
            # replace the body.
            changes_body=getattr(engine, "changes_body", False) is True,
            mta=self.mta,
            limits=self.limits,
        )
        try:
            await self._serve(session, reader, writer)
        except ProtocolError as exc:
            log.warning("milter protocol error, dropping the connection: %s", exc)
        except _TimedOut as exc:
            log.warning("%s: tempfailing and closing the connection", exc)
            with contextlib.suppress(Exception):
                writer.write(replies.reply_code(*TIMEOUT_REPLY))
                await asyncio.wait_for(writer.drain(), 1)
        except _HungUp as exc:
            log.warning("%s", exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("MTA closed the connection")
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("unexpected error in milter connection")
        finally:
            session.close()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        early = bytearray()  # read while a scan ran (pipelined by the MTA)
        partial: list[float] = []
        while True:
            if early:
                data = bytes(early)
                early.clear()
            else:
                data = await self._read(session, reader, partial)
                if not data:
                    return
            out = session.receive(data)
            while True:
                await self._write(out, writer)
                if out.message is None:
                    break
                out = await self._end_of_message(session, out.message, reader, writer, early)
            await writer.drain()
            if out.closed:
                return

    async def _read(
        self, session: Session, reader: asyncio.StreamReader, partial: list[float]
    ) -> bytes:
        """The next bytes, within the idle timeout, or within the packet timeout of the
        first byte of a packet still incomplete (one byte a second cannot hold a
        connection open). ``partial`` is [offset, time] of that packet's start."""
        loop = asyncio.get_running_loop()
        offset = session.partial_packet
        if offset is None:
            partial.clear()
            wait = self.idle_timeout
            what = f"milter connection idle for {self.idle_timeout:g}s"
        else:
            if not partial or partial[0] != offset:
                partial[:] = [offset, loop.time()]
            wait = partial[1] + self.packet_timeout - loop.time()
            what = f"no complete milter packet within {self.packet_timeout:g}s"
        try:
            return await asyncio.wait_for(reader.read(READ_SIZE), max(wait, 0))
        except TimeoutError:
            raise _TimedOut(what) from None

    async def _refuse_busy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        log.warning("more than %d milter connections: tempfailing a new one", self.max_connections)
        decoder = Decoder()
        # Every step takes a reply: the first command after the negotiation is
        # answered with TEMPFAIL, which Postfix applies to the whole SMTP session.
        wants = Wants(reply_steps=frozenset(Command), macros={})
        async with asyncio.timeout(BUSY_TIMEOUT):
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                for event in decoder.feed(data):
                    if isinstance(event, OptNeg):
                        writer.write(negotiate(event, wants).encode())
                    elif not isinstance(event, Macro):
                        writer.write(replies.tempfail())
                        await writer.drain()
                        return
                await writer.drain()

    @staticmethod
    async def _write(out: Output, writer: asyncio.StreamWriter) -> None:
        """Write an output's replies; a replaced body streams from its spool file one
        packet at a time, waiting for the MTA to take each, so memory stays flat."""
        body = out.body
        if body is None:
            if out.send:
                writer.write(out.send)
            return
        try:
            writer.write(out.send)
            for packet in body_packets(body):
                writer.write(packet)
                await writer.drain()
        finally:
            body.close()
        writer.write(out.after)

    async def _end_of_message(
        self,
        session: Session,
        message: Message,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        early: bytearray,
    ) -> Output:
        # The engine is held until the answer is built: a reload meanwhile
        # closes it only after this scan.
        async with self.holder.use() as engine:
            return await self._scan(engine, session, message, reader, writer, early)

    async def _scan(
        self,
        engine: EngineLike,
        session: Session,
        message: Message,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        early: bytearray,
    ) -> Output:
        started = time.monotonic()
        task = asyncio.ensure_future(engine.scan(message))
        # Watch the connection while the scan runs: an MTA that hangs up no longer
        # wants the answer, so the scan (clamd, spamd, ...) is cancelled.
        watch: asyncio.Task[bytes] | None = asyncio.ensure_future(reader.read(READ_SIZE))
        try:
            await writer.drain()
            while True:
                waiting: set[asyncio.Future[Any]] = {task}
                if watch is not None:
                    waiting.add(watch)
                done, _ = await asyncio.wait(
                    waiting, timeout=self.progress_interval, return_when=asyncio.FIRST_COMPLETED
                )
                if task in done:
                    break
                if watch is not None and watch in done:
                    data = watch.result()
                    if not data:
                        raise _HungUp(
                            f"{log_token(message.envelope.queue_id or 'NOQUEUE')}: the MTA hung up "
                            "during the scan: scan cancelled"
                        )
                    early += data
                    # More input before our answer is pipelining, not a hang-up:
                    # keep it for after the answer and stop reading meanwhile.
                    watch = None
                    continue
                writer.write(replies.progress())
                await writer.drain()
            try:
                result = task.result()
            except Exception as exc:
                log.error(
                    "%s: scan failed (%s: %s): default action %s",
                    log_token(message.envelope.queue_id or "NOQUEUE"),
                    type(exc).__name__,
                    exc,
                    self.default_action,
                )
                return session.fail(exc)
            elapsed = time.monotonic() - started
            for line in format_lines(result, elapsed=elapsed, size=message.size):
                log.info("%s", line)
            self.messages += 1
            if len(message.headers) + len(result.edits) > THREAD_EDITS:
                return await asyncio.to_thread(session.complete, result)
            return session.complete(result)
        finally:
            if watch is not None and not watch.done():
                watch.cancel()
                with contextlib.suppress(BaseException):
                    await watch
            elif watch is not None and not watch.cancelled() and watch.exception() is None:
                early += watch.result()  # came in with the result: not lost
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # -- shutdown ----------------------------------------------------------------

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let scans in flight finish (bounded), then close all;
        a second call does nothing."""
        await self._listeners.stop(self.holder, self._tracked, drain_timeout, log)


def ensure_fd_room(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE so that ``max_connections`` connections (each
    may hold a spool file too) fit: a service manager's default soft limit is
    often 1024, and past it accept() fails instead of the busy tempfail. Returns
    the soft limit now in force; warns when the hard limit is too low."""
    need = 2 * max_connections + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning(
            "only %d file descriptors (RLIMIT_NOFILE) for --max-connections %d, which "
            "may need %d: raise the hard limit (systemd: LimitNOFILE=)",
            soft,
            max_connections,
            need,
        )
    return soft
