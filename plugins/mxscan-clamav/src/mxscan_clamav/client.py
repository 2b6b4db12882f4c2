"""A small asyncio clamd client: zINSTREAM, zPING, zVERSION over unix or TCP sockets.

Why raw non-blocking sockets (``loop.sock_*``) and not asyncio streams: when a
stream exceeds ``StreamMaxLength``, clamd answers ``INSTREAM size limit exceeded.
ERROR`` and closes, and the client's next write fails with EPIPE/ECONNRESET. An
asyncio transport that hits a write error closes the socket at once and drops
whatever reply was still unread in the kernel, so the client could only report
"connection lost". Owning the socket, the client reads clamd's answer after the
failed write and reports what clamd actually said. ``loop.sock_sendall`` also gives
true sendall semantics (several libraries lose data with a bare ``send()``).

Several addresses: each request starts at the next address in turn (round-robin)
and moves on to the following one only when connecting fails; once connected, a
failure is reported, not retried, because clamd may already have consumed part of
a stream the caller can only give once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from mxscan import Address, InetAddress, UnixAddress, parse_addresses

from .protocol import (
    CHUNK_SIZE,
    INSTREAM,
    MAX_REPLY_SIZE,
    PING,
    VERSION,
    ClamdError,
    ClamdErrorReply,
    ScanResult,
    instream_frames,
    parse_ping_reply,
    parse_scan_reply,
    parse_version_reply,
)

__all__ = [
    "ClamdClient",
    "ClamdConnectionLost",
    "ClamdTimeout",
    "ClamdUnavailable",
]

T = TypeVar("T")

_CONNECTION_LOST = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class ClamdUnavailable(ClamdError):
    """No configured clamd accepted a connection."""


class ClamdTimeout(ClamdError):
    """clamd did not connect, read or answer within the configured time."""


class ClamdConnectionLost(ClamdError):
    """clamd closed the connection before giving a complete answer."""


class ClamdClient:
    """Talks to one or more clamd; safe to share between concurrent scans.

    ``timeout`` is the deadline for a whole request - connecting (failover
    included), sending the stream, waiting for the verdict - so a caller's own
    deadline just above it is never the one that fires. ``connect_timeout`` bounds
    each connection attempt, so a dead first address costs at most that much
    before failover.
    """

    def __init__(
        self,
        address: str | Sequence[str] | Sequence[Address],
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if isinstance(address, str):
            self.addresses: tuple[Address, ...] = parse_addresses(address)
        else:
            items = list(address)
            if items and all(isinstance(item, UnixAddress | InetAddress) for item in items):
                self.addresses = tuple(items)  # type: ignore[arg-type]
            else:
                self.addresses = parse_addresses(items)  # type: ignore[arg-type]
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("clamd timeouts must be positive")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.chunk_size = chunk_size
        self._turn = itertools.count()

    async def ping(self) -> None:
        """Raises unless a clamd answers PONG."""
        reply, address = await self._request([PING])
        _with_address(parse_ping_reply, reply, address)

    async def version(self) -> str:
        """clamd's version line, e.g. ``ClamAV 1.4.6/27000/Thu Nov 27 09:00:00 2026``."""
        reply, address = await self._request([VERSION])
        return _with_address(parse_version_reply, reply, address)

    async def instream(self, chunks: Iterable[bytes]) -> ScanResult:
        """Scan a stream of bytes; only one frame of it is held in memory at a time.

        Raises :class:`StreamLimitExceeded` when clamd refused the stream as too
        long, other :class:`ClamdError` subclasses when there is no verdict.
        """
        frames = itertools.chain([INSTREAM], instream_frames(chunks, self.chunk_size))
        reply, address = await self._request(frames, stream=True)
        return _with_address(parse_scan_reply, reply, address)

    async def _request(
        self, frames: Iterable[bytes], *, stream: bool = False
    ) -> tuple[bytes, Address]:
        phase = "connecting"
        sock: socket.socket | None = None
        address: Address | None = None
        try:
            async with asyncio.timeout(self.timeout):
                sock, address = await self._connect()
                loop = asyncio.get_running_loop()
                phase = "sending the request"
                sent, lost = await _send(loop, sock, frames, str(address))
                phase = "waiting for the reply"
                reply = await _read_reply(loop, sock, str(address))
        except TimeoutError:
            if address is None:
                tried = ", ".join(str(a) for a in self.addresses)
                raise ClamdTimeout(
                    f"no connection to any clamd within {self.timeout:g}s (tried {tried})"
                ) from None
            raise ClamdTimeout(
                f"no answer within {self.timeout:g}s while {phase}", address=str(address)
            ) from None
        finally:
            if sock is not None:
                sock.close()
        where = str(address)
        if lost is None:
            if not reply:
                raise ClamdConnectionLost("closed the connection without an answer", address=where)
            return reply, address
        # clamd stopped reading before the end of the stream. The only honest
        # reason is an ERROR reply (typically the size limit); a clean or infected
        # answer to a partial stream would be a verdict on bytes that were never
        # scanned, so anything else is a lost connection.
        try:
            _with_address(parse_scan_reply, reply, address)
        except ClamdErrorReply:
            return reply, address
        except ClamdError:
            pass
        what = "stream" if stream else "request"
        raise ClamdConnectionLost(
            f"closed the connection after {sent} bytes of the {what} "
            f"({_describe(lost)}) without an answer",
            address=where,
        )

    async def _connect(self) -> tuple[socket.socket, Address]:
        count = len(self.addresses)
        start = next(self._turn) % count
        failures: list[str] = []
        for index in range(count):
            address = self.addresses[(start + index) % count]
            try:
                return await self._open(address), address
            except TimeoutError:
                failures.append(f"{address}: no connection within {self.connect_timeout:g}s")
            except OSError as exc:
                failures.append(f"{address}: {_describe(exc)}")
        raise ClamdUnavailable("no clamd reachable: " + "; ".join(failures))

    async def _open(self, address: Address) -> socket.socket:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            if isinstance(address, UnixAddress):
                targets: list[tuple[int, object]] = [(socket.AF_UNIX, address.path)]
            else:
                infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
                targets = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
            error: OSError = OSError(f"{address} resolves to nothing")
            for family, sockaddr in targets:
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    if family != socket.AF_UNIX:
                        # The 4-byte end-of-stream frame follows a full chunk:
                        # with Nagle it would wait for a delayed ACK (~40 ms).
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    await loop.sock_connect(sock, sockaddr)  # type: ignore[arg-type]
                    return sock
                except OSError as exc:
                    sock.close()
                    error = exc
                except BaseException:
                    sock.close()
                    raise
            raise error


async def _send(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, frames: Iterable[bytes], where: str
) -> tuple[int, OSError | None]:
    """Send every frame (sendall semantics); stop quietly if clamd hangs up.

    Returns the bytes sent and the error that stopped the sending, if clamd closed
    the connection: the caller still reads what clamd said before closing.
    Errors from producing the frames (reading the spooled message) propagate as
    they are: they are not clamd's fault.
    """
    sent = 0
    for data in frames:
        try:
            await loop.sock_sendall(sock, data)
        except _CONNECTION_LOST as exc:
            return sent, exc
        except OSError as exc:
            raise ClamdConnectionLost(f"cannot send: {_describe(exc)}", address=where) from exc
        sent += len(data)
    return sent, None


async def _read_reply(loop: asyncio.AbstractEventLoop, sock: socket.socket, where: str) -> bytes:
    """Everything clamd sends until it closes: after a z-command it always does.

    A reset ends the reply like a close does, keeping what arrived before it
    (clamd answered, then the kernel reset the connection because the client was
    still writing); the parser decides whether that is a complete answer.
    """
    data = bytearray()
    while len(data) <= MAX_REPLY_SIZE:
        try:
            piece = await loop.sock_recv(sock, 65536)
        except _CONNECTION_LOST:
            break
        except OSError as exc:
            raise ClamdConnectionLost(f"cannot read: {_describe(exc)}", address=where) from exc
        if not piece:
            break
        data += piece
    return bytes(data)


def _with_address(parse: Callable[[bytes], T], reply: bytes, address: Address) -> T:
    """Run a reply parser, naming the clamd that sent the reply in any error."""
    try:
        return parse(reply)
    except ClamdError as exc:
        exc.address = str(address)
        raise


def _describe(exc: BaseException) -> str:
    """``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    if isinstance(exc, OSError) and exc.errno:
        # asyncio's sock_connect puts "Connect call failed (...)" in strerror.
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
