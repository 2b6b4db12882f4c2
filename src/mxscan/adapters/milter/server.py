"""The thin asyncio layer around ``Session``: sockets, keepalives, drain, reload.

Everything protocol-shaped is in the sans-I/O session; this module only moves bytes,
runs the engine at end-of-message (sending SMFIR_PROGRESS while it runs so Postfix's
``milter_content_timeout`` never fires during a slow scan), and owns the listening
socket's lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import importlib
import logging
import os
import pwd
import resource
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from mxscan.adapters.milter import replies
from mxscan.adapters.milter.codec import Decoder, Macro, OptNeg, ProtocolError
from mxscan.adapters.milter.constants import Command
from mxscan.adapters.milter.negotiate import Wants, negotiate
from mxscan.adapters.milter.outcome import body_packets
from mxscan.adapters.milter.session import DefaultAction, Limits, MtaChoice, Session, Step
from mxscan.addresses import Address, InetAddress, UnixAddress
from mxscan.body import DEFAULT_SPOOL_THRESHOLD
from mxscan.logline import format_lines, log_token
from mxscan.message import Message
from mxscan.pipeline import THREAD_EDITS  # also the bound for turning edits into replies
from mxscan.verdict import Result

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


class ScanEngine(Protocol):
    """What the server needs from ``mxscan.Engine`` (tests pass small fakes)."""

    async def scan(self, message: Message) -> Result: ...

    def policy_for(self, recipient: str) -> str: ...

    async def aclose(self) -> None: ...


class ServerError(Exception):
    """A listener cannot be set up (socket in use, not a socket, bad owner...)."""


class MilterServer:
    def __init__(
        self,
        engine: ScanEngine,
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
        self.engine = engine
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
        self.socket_mode = socket_mode
        self.socket_owner = socket_owner
        self.socket_group = socket_group
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[tuple[str, int]] = []  # path, inode: remove only our own
        self._connections: set[asyncio.Task[None]] = set()
        self._scans = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._engine_users: dict[int, int] = {}
        self._retired: list[ScanEngine] = []
        self.messages = 0

    # -- listeners -----------------------------------------------------------

    async def listen(self, address: Address) -> None:
        if isinstance(address, UnixAddress):
            sock = self._bind_unix(address.path)
            server = await asyncio.start_unix_server(
                self._accept, sock=sock, limit=READ_SIZE, backlog=self.backlog
            )
        else:
            server = await self._listen_inet(address)
        self._servers.append(server)
        log.info("milter listening on %s", address)

    async def _listen_inet(self, address: InetAddress) -> asyncio.Server:
        try:
            return await asyncio.start_server(
                self._accept,
                address.host,
                address.port,
                reuse_address=True,
                limit=READ_SIZE,
                backlog=self.backlog,
            )
        except OSError as exc:
            raise ServerError(f"cannot listen on {address}: {exc.strerror or exc}") from None

    def _bind_unix(self, path: str) -> socket.socket:
        _remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # never world-accessible, even for a moment
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            parent = Path(path).parent
            hint = "" if parent.is_dir() else f" (create the directory {parent} first)"
            raise ServerError(f"cannot bind unix:{path}: {exc.strerror or exc}{hint}") from None
        finally:
            os.umask(old_umask)
        try:
            uid = _uid(self.socket_owner) if self.socket_owner else -1
            gid = _gid(self.socket_group) if self.socket_group else -1
            if uid != -1 or gid != -1:
                os.chown(path, uid, gid)
            Path(path).chmod(self.socket_mode)
        except (OSError, ServerError) as exc:
            sock.close()
            with contextlib.suppress(OSError):
                Path(path).unlink()
            raise ServerError(f"unix:{path}: {exc}") from None
        self._unix_paths.append((path, Path(path).stat().st_ino))
        return sock

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for server in self._servers for s in server.sockets]

    # -- engine ----------------------------------------------------------------

    def replace_engine(self, engine: ScanEngine) -> None:
        """SIGHUP: new messages use ``engine``; the old one closes once idle."""
        old = self.engine
        self.engine = engine
        self._retired.append(old)
        self._close_retired()

    def _close_retired(self) -> None:
        for old in list(self._retired):
            if self._engine_users.get(id(old), 0) == 0:
                self._retired.remove(old)
                task = asyncio.ensure_future(old.aclose())
                task.add_done_callback(_log_task_error)

    # -- connections -----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self._connections) > self.max_connections:
            try:
                await self._refuse_busy(reader, writer)
            except (TimeoutError, ProtocolError, ConnectionError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                self._connections.discard(task)
            return
        session = Session(
            policy_for=lambda rcpt: self.engine.policy_for(rcpt),
            split_policies=self.split_policies,
            default_action=self.default_action,
            spool_threshold=self.spool_threshold,
            spool_dir=self.spool_dir,
            # Engines without the property (test fakes, older embedders) never
            # replace the body.
            changes_body=getattr(self.engine, "changes_body", False) is True,
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
            self._connections.discard(task)

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
            step = session.receive(data)
            while True:
                await self._write(step, writer)
                if step.message is None:
                    break
                step = await self._end_of_message(session, step.message, reader, writer, early)
            await writer.drain()
            if step.closed:
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
    async def _write(step: Step, writer: asyncio.StreamWriter) -> None:
        """Write a step's replies; a replaced body streams from its spool file one
        packet at a time, waiting for the MTA to take each, so memory stays flat."""
        body = step.body
        if body is None:
            if step.send:
                writer.write(step.send)
            return
        try:
            writer.write(step.send)
            for packet in body_packets(body):
                writer.write(packet)
                await writer.drain()
        finally:
            body.close()
        writer.write(step.after)

    async def _end_of_message(
        self,
        session: Session,
        message: Message,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        early: bytearray,
    ) -> Step:
        engine = self.engine
        self._scans += 1
        self._idle.clear()
        self._engine_users[id(engine)] = self._engine_users.get(id(engine), 0) + 1
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
            self._engine_users[id(engine)] -= 1
            self._scans -= 1
            if self._scans == 0:
                self._idle.set()
            self._close_retired()

    # -- shutdown ----------------------------------------------------------------

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let scans in flight finish (bounded), then close all."""
        for server in self._servers:
            server.close()
        self._remove_sockets()
        # Nothing in flight (a failed start, an idle stop): nothing to wait for,
        # and no "drain timeout" to report (wait_for with 0 s times out even on
        # an event that is already set).
        if self._scans:
            try:
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
            except TimeoutError:
                log.warning("drain timeout: %d scans still running, closing anyway", self._scans)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self._servers.clear()
        await _close_all([self.engine, *self._retired])
        self._retired.clear()

    def _remove_sockets(self) -> None:
        for path, inode in self._unix_paths:
            try:
                if Path(path).stat().st_ino == inode:
                    Path(path).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove unix:%s: %s", path, exc.strerror)
        self._unix_paths.clear()


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


def _remove_stale_socket(path: str) -> None:
    """A socket left by a crashed instance is removed; a live one or a file is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerError(f"unix:{path} exists and is not a socket: not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        log.info("removing stale socket unix:%s", path)
        Path(path).unlink()
        return
    finally:
        probe.close()
    raise ServerError(f"unix:{path} is in use by another process")


def _uid(user: str) -> int:
    try:
        return int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ServerError(f"no such user: {user}") from None


def _gid(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ServerError(f"no such group: {group}") from None


#: Modules the stdlib imports lazily while mail is being scanned: asyncio's default
#: executor (``asyncio.to_thread``, used by plugins for CPU-bound work) and the IDNA
#: codec (``open_connection`` to a host name). Imported before the privilege drop, so
#: scanning never depends on the new user being able to read the Python installation.
PRELOAD_MODULES = ("concurrent.futures.thread", "encodings.idna")


def drop_privileges(user: str) -> None:
    """Become ``user`` (and its groups) after the sockets are bound.

    Modules not yet imported may be unreadable for ``user`` (an interpreter under
    /root, say): the ones scanning needs are imported first, and a warning names the
    problem rather than every later import failing mysteriously mid-scan. The
    caller then loads the configuration again as ``user`` (see
    :func:`check_as_user`), so a reload that could never work fails at start.
    """
    for name in PRELOAD_MODULES:
        importlib.import_module(name)
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise ServerError(f"no such user: {user}") from None
    if os.getuid() == entry.pw_uid:
        return
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise ServerError(f"cannot switch to user {user}: not running as root") from None
    log.info("running as user %s", entry.pw_name)
    stdlib = str(Path(os.__file__).parent)
    if not os.access(stdlib, os.R_OK | os.X_OK):
        log.warning(
            "user %s cannot read the Python installation (%s): a configuration reload "
            "that needs new modules will fail; install mxscan where %s can read it",
            entry.pw_name,
            stdlib,
            entry.pw_name,
        )


def unreadable_install_path() -> str | None:
    """The first directory of the installation (the interpreter's prefix, then each
    import path) that the current user cannot read, if any: what an error after a
    privilege drop should name."""
    for path in [sys.prefix, str(Path(os.__file__).parent), *sys.path]:
        current = Path(path)
        if not path or not current.is_absolute():
            continue
        for part in [*reversed(current.parents), current]:
            if part.exists() and not os.access(part, os.R_OK | os.X_OK):
                return str(part)
    return None


async def _close_all(engines: list[ScanEngine]) -> None:
    for engine in engines:
        try:
            await engine.aclose()
        except Exception:
            log.exception("error while closing the scanners")


def _log_task_error(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("error while closing the old scanners: %s", task.exception())
